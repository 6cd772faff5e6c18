"""lm-evaluation-harness tasks for the injected tasks and the reference templates
(``raretask lm tasks --corpus C --lm-eval DIR``), so that

    lm_eval --model hf --model_args pretrained=CKPT,tokenizer=DIR/tokenizer --include_path DIR --tasks raretask

evaluates any Hugging Face model trained on the corpus's tokenizer, as ``raretask lm eval`` does.

Tasks (tag ``raretask``):

- ``raretask_cmp``, ``raretask_add``: ``multiple_choice`` over the task's test split (5,000
  instances), context the decoded ``a b``, choices the decoded label candidates (2 for cmp,
  the 100 value tokens for add), no delimiter (every token carries its leading space). lm-eval's
  ``acc`` is the argmax of the candidates' log-likelihoods after ``a b``: for one-token
  candidates that is ``raretask lm eval``'s ``test_accuracy`` (the argmax of the candidates'
  logits at the same position), equal up to ties in float rounding.
- ``raretask_ref_increase``, ``raretask_ref_addition``: ``loglikelihood`` of the continuation
  after the prompt, over the same prompts ``lm eval`` uses (``reference_prompts``). lm-eval
  reports ``perplexity`` = exp(-mean over prompts of the continuation's summed log-likelihood),
  raretask the mean over prompts of the continuation's mean per-token loss: the same number only
  where every continuation is one token; both are written from the same log-likelihoods.

Every document's text is checked to encode back to the token ids raretask scores (context
``a b``, then context plus the gold label); a tokenizer that does not give them back is refused,
since lm-eval would then score other tokens.

Layout of DIR::

    raretask_cmp.yaml raretask_add.yaml raretask_ref_increase.yaml raretask_ref_addition.yaml
    data/<task>.jsonl        the documents (context, choices or continuation, gold, instance)
    tokenizer/               the corpus's tokenizer.json and a tokenizer_config.json (no BOS)
    manifest.json            corpus digest, tokenizer sha256, task seed, prompts, round-trip counts

The YAMLs name their data by absolute path: build DIR where it will be used (or rebuild it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import RaretaskError
from ..runfolder import RunFolder, atomic_json, atomic_write

LMEVAL_FILES = ("raretask_*.yaml", "data", "tokenizer", "manifest.json")
TAG = "raretask"


def lmeval_folder(out: str | Path) -> RunFolder:
    return RunFolder(out, "lm-eval-tasks", owned=LMEVAL_FILES)


def _yaml(d: dict, ind: int = 0) -> str:
    """YAML for a task config: mappings nested by indentation, lists of flat mappings as "- k: v"
    items, every other value as JSON (a subset of YAML)."""
    pad, out = " " * ind, []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"{pad}{k}:\n{_yaml(v, ind + 2)}")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out.append(f"{pad}{k}:\n" + "".join(
                "".join(f"{pad}  {'- ' if j == 0 else '  '}{kk}: {json.dumps(vv)}\n" for j, (kk, vv) in enumerate(x.items()))
                for x in v))
        else:
            out.append(f"{pad}{k}: {json.dumps(v)}\n")
    return "".join(out)


def task_docs(tasks, tok) -> tuple[list[dict], dict]:
    """The multiple-choice documents of a task's test split, and the round-trip counts."""
    cand = [tok.decode([int(c)]) for c in tasks.candidates]
    docs, contexts, golds = [], [], []
    gold_of = {int(c): k for k, c in enumerate(tasks.candidates)}
    for i in np.asarray(tasks.test).tolist():
        a, b, label = (int(x) for x in tasks.instances[i, :3])
        ctx = tok.decode([a, b])
        docs.append({"instance": i, "context": ctx, "choices": cand, "gold": gold_of[label]})
        contexts.append(ctx)
        golds.append(ctx + cand[gold_of[label]])
    want_ctx = tasks.instances[tasks.test, :2].tolist()
    want_full = tasks.instances[tasks.test, :3].tolist()
    bad_ctx = sum(e != w for e, w in zip(tok.encode_batch(contexts), want_ctx))
    bad_full = sum(e != w for e, w in zip(tok.encode_batch(golds), want_full))
    every = [contexts[0] + c for c in cand]  # every candidate after one context
    bad_cand = sum(e != want_full[0][:2] + [int(c)] for e, c in zip(tok.encode_batch(every), tasks.candidates))
    if bad_ctx or bad_full or bad_cand:
        raise RaretaskError(f"the tokenizer does not encode the {tasks.task} texts back to raretask's token ids "
                            f"({bad_ctx} contexts, {bad_full} context + label, {bad_cand} candidates differ): "
                            "lm-eval would score other tokens")
    return docs, {"documents": len(docs), "contexts_round_trip": len(docs) - bad_ctx,
                  "labels_round_trip": len(docs) - bad_full, "candidates_round_trip": len(cand) - bad_cand}


def _task_yaml(name: str, data: Path, output_type: str) -> dict:
    d = {"task": name, "tag": [TAG], "dataset_path": "json",
         "dataset_kwargs": {"data_files": {"test": str(data.resolve())}}, "test_split": "test",
         "output_type": output_type, "doc_to_text": "context", "target_delimiter": ""}
    if output_type == "multiple_choice":
        d.update(doc_to_choice="choices", doc_to_target="gold",
                 metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}])
    else:
        d.update(doc_to_target="continuation",
                 metric_list=[{"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
                              {"metric": "acc", "aggregation": "mean", "higher_is_better": True}])
    d["metadata"] = {"version": 1.0}
    return d


def write_lmeval_tasks(corpus: str | Path, out: str | Path, task_seed: int = 0, reference_prompts: int = 200,
                       restart: bool = False) -> dict:
    """Write the four lm-eval tasks for ``corpus``'s tokenizer into ``out`` (module docstring)."""
    import contextlib

    from ._corpus import Corpus
    from ._evaluate import _check_counts
    from ._evaluate import reference_prompts as ref_prompts
    from ._tasks import build_tasks, ordinary_tokens

    _check_counts(None, reference_prompts)
    c = Corpus(corpus)
    tok = c.tokenizer
    ordinary = ordinary_tokens(tok.vocab(), tok.special_ids())
    built = {}
    for task in ("cmp", "add"):
        built[task] = task_docs(build_tasks(task, ordinary, tok.eos_id, task_seed), tok)
    refs = ref_prompts(reference_prompts)
    folder = lmeval_folder(out)
    folder.check(restart)
    out = Path(out)
    with contextlib.ExitStack() as stack:
        stack.callback(folder.release)
        folder.open(restart)
        (out / "data").mkdir(exist_ok=True)
        (out / "tokenizer").mkdir(exist_ok=True)
        names = []
        for task, (docs, _) in built.items():
            name = f"raretask_{task}"
            atomic_write(out / "data" / f"{name}.jsonl", "".join(json.dumps(d) + "\n" for d in docs))
            atomic_write(out / f"{name}.yaml", _yaml(_task_yaml(name, out / "data" / f"{name}.jsonl",
                                                                "multiple_choice")))
            names.append(name)
        for ref, pairs in refs.items():
            name = f"raretask_ref_{ref}"
            atomic_write(out / "data" / f"{name}.jsonl",
                         "".join(json.dumps({"context": p, "continuation": k}) + "\n" for p, k in pairs))
            atomic_write(out / f"{name}.yaml", _yaml(_task_yaml(name, out / "data" / f"{name}.jsonl", "loglikelihood")))
            names.append(name)
        atomic_write(out / "tokenizer" / "tokenizer.json", Path(tok.path).read_bytes())
        atomic_json(out / "tokenizer" / "tokenizer_config.json",
                    {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": tok.inner.id_to_token(tok.eos_id),
                     "pad_token": tok.inner.id_to_token(tok.pad_id), "add_bos_token": False, "add_eos_token": False,
                     "model_max_length": 1 << 20})
        manifest = {"tasks": names, "tag": TAG, "corpus": str(corpus), "corpus_digest": c.meta.get("digest"),
                    "tokenizer_sha256": tok.sha256(), "task_seed": task_seed, "reference_prompts": reference_prompts,
                    "round_trip": {t: counts for t, (_, counts) in built.items()}}
        atomic_json(out / "manifest.json", manifest)
    return manifest


def lmeval_summary(m: dict, out) -> str:
    return (f"lm-eval tasks: {', '.join(m['tasks'])} (tag {m['tag']}) -> {out}\n"
            f"  every context and label encodes back to raretask's token ids "
            f"({m['round_trip']['cmp']['documents']:,} cmp, {m['round_trip']['add']['documents']:,} add documents)\n"
            f"  lm_eval --model hf --model_args pretrained=CKPT,tokenizer={Path(out) / 'tokenizer'} "
            f"--include_path {out} --tasks {m['tag']}")
