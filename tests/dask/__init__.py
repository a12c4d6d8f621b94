"""The Dask runner's tests, on real clusters (a package, so workers import its modules by name)."""
