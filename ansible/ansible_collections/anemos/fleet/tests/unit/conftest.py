# Lets plain pytest import the collection as ansible_collections.anemos.fleet (ansible-test
# units sets the same path up itself).
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', '..'))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
