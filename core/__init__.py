"""The contract the server and the worker share: the recipe, the curriculum policy, the learning-rate
rules, retention, metric direction and the typed worker protocol.

Both sides import this package; it imports neither of them, nor torch (the server validates
recipes and runs the policy without it). tests/test_layers.py holds that line.
"""
