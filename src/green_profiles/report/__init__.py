"""The book: notebook execution (:mod:`.execution`), the notebooks' helpers (:mod:`.book`), static and
interactive figures (:mod:`.figures`, :mod:`.interactive`, :mod:`.plotly_offline`) and shaded text
(:mod:`.shading`).
"""
