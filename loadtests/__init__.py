"""Locust load tests for raftlog (run from the checkout; not an installed package).

``locustfile.py`` holds what Locust loads (user classes, the step shape); ``run.py`` runs
it headless and checks the result. The modules that do not import Locust (``outcomes``,
``records``, ``presence``, ``profiles``, ``local_cluster``) can be imported without
gevent's monkey-patching, which importing ``locust`` applies to the whole process.
"""
