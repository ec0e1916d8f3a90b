"""The GPT-3 scaling figures on the model ladder, under a wall-clock budget (the issue-13 measurements).

    python -m bench.ladder_scaling TASK OUTPUT_DIR --models default,gemma-3-270m,... \
        [--limit 100] [--shots 0,1,4,8] [--seeds 3] [--max-chars 100] [--calibrate] [--until HH:MM]

TASK is a task file, "bbc-news", or "bbc-news-dev" (a dev split carved from the BBC demonstration pool,
for choosing options without touching the test split).

Models are named by ladder name (`zeroshot.models.ladder.LADDER`), "default" (the built-in 135M)
or a path. Runs go through `zeroshot.eval.scaling.evaluate_models` exactly as `zeroshot eval-text
--model ... --model ...` does, with one addition the CLI lacks: `--until` (UTC) stops starting new
(K, seed) runs after that time, so a slow shared machine still ends with the runs it finished (runs
are ordered seed-major, so the first seeds give whole curves). Started again with the same options it
resumes from the checkpoints under OUTPUT_DIR/runs/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from bench.common import bbc_dev_task, model_path

from zeroshot.eval.runs import EvalConfig
from zeroshot.eval.scaling import evaluate_models, format_scaling_table
from zeroshot.eval.tasks import load_task
from zeroshot.models.ladder import LADDER
from zeroshot.models.loader import load_lm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("output_dir")
    parser.add_argument("--models", default="default," + ",".join(m.name for m in LADDER))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--shots", default="0,1,4,8")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-chars", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--chat-template", action="store_true", default=None)
    parser.add_argument("--log-samples", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp threads (default: all cores; on a busy machine 1 avoids spinning)")
    parser.add_argument("--until", help="UTC time HH:MM after which no new (K, seed) run starts")
    args = parser.parse_args(argv)
    deadline = None
    if args.until:
        hour, minute = map(int, args.until.split(":"))
        now = dt.datetime.now(dt.UTC)
        when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if when < now - dt.timedelta(hours=12):
            when += dt.timedelta(days=1)
        deadline = when.timestamp()
    threads = {} if args.threads is None else {"n_threads": args.threads}
    dev = args.task == "bbc-news-dev"
    task = bbc_dev_task(args.max_chars) if dev else load_task(args.task, max_chars=args.max_chars)
    config = EvalConfig(task, shots=args.shots, seeds=args.seeds, limit=args.limit, calibrate=args.calibrate,
                        chat_template=args.chat_template, max_new_tokens=args.max_tokens)
    scaling = evaluate_models(
        [model_path(m) for m in args.models.split(",")], config, args.output_dir,
        lambda m: load_lm(m, backend="llama.cpp", **threads), log_samples=args.log_samples, deadline=deadline,
        on_model=lambda r: print(f"{r.model}: {r.seconds:.0f} s, missing {r.missing_runs}", flush=True),
    )
    print(format_scaling_table(scaling))
    return 0


if __name__ == "__main__":
    sys.exit(main())
