import sys

from kit.cli import run_stage
from seeds.main import add_arguments, main

sys.exit(run_stage("seeds", main, sys.argv[1:], add_arguments))
