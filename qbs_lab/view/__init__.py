"""The live view: a read-only web page that follows the runs and the queue as the data comes in.

``qbs-lab view`` serves it (:mod:`.server`); :mod:`.reader` reads the catalog, stores and run logs from
the outside, never writing them; :mod:`.night` adds the queue's estimates; ``static/`` is the page.
"""
