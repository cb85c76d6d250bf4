"""augkit.data: the torch-free data layer (label formats, test points, the run folder)."""
