"""The report a person looks at: one self-contained HTML file per run.

``html`` lays out the page (diagnosis first, then one ladder per exchange with the
probe's own view beside it, what the path changed, the run's facts); ``ladder`` follows
each packet across the capture points and draws it as inline SVG. Nothing is fetched
over the network: no external CSS, JavaScript or fonts.
"""
