"""Runs: what to measure (:mod:`.configuration`), what it was measured from (:mod:`.provenance`), the
store of measured runs (:mod:`.store`), measuring (:mod:`.measurement`, :mod:`.distributed`),
bundles for moving runs between machines (:mod:`.bundles`), the experiments and the runs they need
(:mod:`.experiments`, :mod:`.plans`) and what a run will cost (:mod:`.costs`).
"""
