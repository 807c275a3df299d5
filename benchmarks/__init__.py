"""Rewind's benchmark suite: ``python -m benchmarks [--quick] [--only NAME,…] [--json PATH]``.

Every figure is printed beside a baseline measured in the same run on the same
machine, because absolute numbers on shared or virtual machines drift too much
to compare across runs; the ratio is what carries meaning.
"""
