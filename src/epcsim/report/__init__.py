"""Reports of finished runs: plots (PNG and SVG) and one self-contained HTML page.

``results`` reads a results directory, ``plots`` draws each figure from those tables,
``html`` lays the figures and the summary out on one page. A report reads files; it never
looks inside a live simulator.
"""
