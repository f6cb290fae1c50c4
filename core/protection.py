"""How a function is marked protected, and which of its environment values may be shown.

Tags on the function itself, so the same marks work for the demo workload and for a
user's own functions on AWS.
"""

PROTECTED_TAG = "fleet-protected"
# Space-separated names of environment variables whose values the diagnostic tools may
# show; every other value is redacted.
SAFE_ENV_TAG = "fleet-safe-env"
