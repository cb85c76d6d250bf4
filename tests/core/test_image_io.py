"""Image reading: EXIF orientation applied as cv2.imread applies it; header size probe; bounded parser."""

import struct

import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from augkit.io import ImageReadError, decode_image, exif_orientation, image_size, read_image


def exif_segment(orientation: int, endian: str = "<") -> bytes:
    """An APP1 Exif segment whose IFD0 holds one entry: orientation (SHORT)."""
    order = b"II" if endian == "<" else b"MM"
    tiff = (order + struct.pack(endian + "HI", 42, 8) + struct.pack(endian + "H", 1)
            + struct.pack(endian + "HHI", 0x0112, 3, 1) + struct.pack(endian + "HH", orientation, 0)
            + struct.pack(endian + "I", 0))
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with_orientation(bgr: np.ndarray, orientation: int, endian: str = "<") -> bytes:
    """cv2.imencode's JPEG with an Exif segment spliced in right after SOI."""
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = buf.tobytes()
    return data[:2] + exif_segment(orientation, endian) + data[2:]


def asymmetric_bgr(h: int = 40, w: int = 64) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:20, :10] = (255, 0, 0)
    img[30:, 50:] = (0, 255, 0)
    img[5:8, 30:60] = (0, 0, 255)
    return img


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_cv2_imread(tmp_path, orientation, endian):
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(jpeg_with_orientation(asymmetric_bgr(), orientation, endian))
    reference = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # applies EXIF
    got = read_image(path)
    displayed = (64, 40) if orientation >= 5 else (40, 64)
    assert got.shape == (*displayed, 3) == reference.shape
    np.testing.assert_array_equal(got, reference)
    assert image_size(path) == (displayed[1], displayed[0])  # (w, h) from the header alone
    assert exif_orientation(path.read_bytes()) == orientation


def test_orientation_6_phone_photo_is_upright(tmp_path):
    stored = asymmetric_bgr(157, 196)  # stored 196x157 (w x h), displayed 157x196
    path = tmp_path / "phone.jpg"
    path.write_bytes(jpeg_with_orientation(stored, 6))
    got = read_image(path)
    assert got.shape == (196, 157, 3)
    np.testing.assert_array_equal(got, cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    assert image_size(path) == (157, 196)


def test_png_size_and_16_bit_png(tmp_path):
    img16 = (np.arange(30 * 50 * 3).reshape(30, 50, 3) * 17 % 65536).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), img16)
    assert image_size(tmp_path / "a.png") == (50, 30)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), cv2.cvtColor((img16 >> 8).astype(np.uint8),
                                                                               cv2.COLOR_BGR2RGB))


def test_size_of_other_formats_falls_back_to_decoding(tmp_path):
    cv2.imwrite(str(tmp_path / "a.bmp"), np.zeros((12, 34, 3), np.uint8))
    assert image_size(tmp_path / "a.bmp") == (34, 12)


@pytest.mark.parametrize("content, match", [(b"", "empty"), (b"not an image", "not a decodable image")])
def test_bad_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=rf"bad.jpg: .*{match}|bad.jpg: the file is {match}"):
        read_image(path)
    with pytest.raises(ImageReadError, match="bad.jpg"):
        image_size(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageReadError, match="nope.jpg: image file not found"):
        image_size(tmp_path / "nope.jpg")


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, 60), junk=st.binary(max_size=40), orientation=st.integers(0, 70000))
def test_malformed_exif_never_crashes_and_reads_as_orientation_1(cut, junk, orientation):
    """Truncated segments, bad lengths, wrong types and out-of-range values: orientation 1 or the tag."""
    seg = exif_segment(orientation % 65536)
    data = b"\xff\xd8" + seg[:len(seg) - cut] + junk
    value = exif_orientation(data)
    assert 1 <= value <= 8
    if cut == 0 and not 1 <= orientation % 65536 <= 8:
        assert value == 1


def test_corrupt_exif_still_decodes_the_image():
    ok, buf = cv2.imencode(".jpg", asymmetric_bgr())
    data = buf.tobytes()
    payload = b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff"  # IFD offset far past the end
    bad = data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]
    assert exif_orientation(bad) == 1
    assert decode_image(bad).shape == (40, 64, 3)
