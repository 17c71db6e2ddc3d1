"""The report a person looks at: one self-contained HTML file per run.

``html`` lays out the page (diagnosis first, then one ladder per exchange with the
probe's own view beside it, what the path changed, the run's facts); ``ladder`` follows
each packet across the capture points and draws it as inline SVG. Nothing is fetched
over the network: no external CSS, JavaScript or fonts.
"""

from rig.outcome import Outcome

# outcomes, worst first (rig's one order, rig.outcome): the order the report lists
# exchanges in, and the outcome that names a run's protocol on the history timeline
PROBLEM_FIRST = tuple(Outcome)
