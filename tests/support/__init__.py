"""Helpers beside the tests: one app launcher (launch.py) and the app's timings (appbench.py).

Imported as `support.<module>` with tests/ on sys.path: pytest puts it there (tests/conftest.py),
scripts such as tests/loadtest.py insert it, and `python -m trainer bench` does so from a checkout.
"""
