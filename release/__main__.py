import sys

from kit.cli import run_stage
from release.stage import add_arguments, main

if __name__ == "__main__":
    sys.exit(run_stage("release", main, add_arguments=add_arguments))
