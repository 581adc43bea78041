"""Analysis of stored runs: profiles (:mod:`.profiles`), the fitted laws and their bootstrap
(:mod:`.fits`), comparisons of exponents (:mod:`.comparison`), per-layer and training-step views
(:mod:`.depth`, :mod:`.dynamics`), and the text's own decay (:mod:`.text_statistics`).
"""
