"""Where the tests find the repository and their data, whatever folder a test file is in."""
import os

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
LEGACY = os.path.join(TESTS, "legacy")      # the original graphs' variable lists
FIXTURES = os.path.join(TESTS, "fixtures")  # real published files (excerpts)
