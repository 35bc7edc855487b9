"""The ``stair-es`` command line: a thin click layer over :mod:`stair_es` (installed as ``stair_es_cli``)."""
