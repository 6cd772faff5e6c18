"""`raretask lm tasks --lm-eval DIR`: lm-evaluation-harness, given the exported tasks, scores a
raretask checkpoint as `raretask lm eval` does (issue 22, point 3).

lm-eval is the `lmeval` extra, outside `dev` (its dependencies would lengthen every CI install):
`make test-lmeval` installs it and runs this file; without it the lm-eval test is skipped, and
says why."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("transformers")

from raretask import ConfigError  # noqa: E402
from raretask.lm import LMTrainConfig, list_checkpoints, train  # noqa: E402
from raretask.lm._lmeval import _yaml, task_docs, write_lmeval_tasks  # noqa: E402

PROMPTS = 40


def test_the_export_round_trips_every_text_and_refuses_a_tokenizer_that_does_not(tmp_path, small_corpus):
    m = write_lmeval_tasks(small_corpus, tmp_path / "lme", reference_prompts=PROMPTS)
    assert m["tasks"] == ["raretask_cmp", "raretask_add", "raretask_ref_increase", "raretask_ref_addition"]
    for task, n_cand in (("cmp", 2), ("add", 100)):
        rt = m["round_trip"][task]
        assert rt == {"documents": 5000, "contexts_round_trip": 5000, "labels_round_trip": 5000,
                      "candidates_round_trip": n_cand}
        docs = [json.loads(x) for x in (tmp_path / "lme" / "data" / f"raretask_{task}.jsonl").read_text().splitlines()]
        assert len(docs) == 5000 and all(len(d["choices"]) == n_cand and 0 <= d["gold"] < n_cand for d in docs)
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load((tmp_path / "lme" / "raretask_cmp.yaml").read_text())
    assert cfg["output_type"] == "multiple_choice" and cfg["tag"] == ["raretask"] and cfg["target_delimiter"] == ""
    assert cfg["metric_list"] == [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]
    assert yaml.safe_load(_yaml({"a": {"b": [{"c": 1, "d": "x"}], "e": [1, 2]}})) == {"a": {"b": [{"c": 1, "d": "x"}],
                                                                                           "e": [1, 2]}}

    class Shifted:  # a tokenizer whose texts do not encode back: every id one off
        def __init__(self, tok):
            self.tok = tok

        def decode(self, ids):
            return self.tok.decode(ids)

        def encode_batch(self, texts):
            return [[i + 1 for i in e] for e in self.tok.encode_batch(texts)]

    from raretask.lm import Corpus, build_tasks, ordinary_tokens

    tok = Corpus(small_corpus).tokenizer
    tasks = build_tasks("cmp", ordinary_tokens(tok.vocab(), tok.special_ids()), tok.eos_id)
    with pytest.raises(Exception, match="does not encode the cmp texts back"):
        task_docs(tasks, Shifted(tok))


def test_the_command_wants_one_output(tmp_path, small_corpus, capsys):
    from raretask import cli

    assert cli.main(["lm", "tasks", "--corpus", str(small_corpus)]) == 2
    assert "--out FILE" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        write_lmeval_tasks(small_corpus, tmp_path / "x", reference_prompts=0)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_lm_eval_scores_a_raretask_checkpoint_as_raretask_does(tmp_path, small_corpus):
    pytest.importorskip("lm_eval", reason="lm-eval is the lmeval extra: `make test-lmeval` runs this test")
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from raretask.lm._evaluate import _continuation_loss, evaluate_checkpoint, reference_prompts
    from raretask.lm._runs import load_model

    cfg = LMTrainConfig(corpus=str(small_corpus), out=str(tmp_path / "run"), steps=40, batch_size=8, seq_len=32,
                        rate=4.0, checkpoint_every=40, warmup=1)
    train(cfg, progress=False)
    ck = list_checkpoints(tmp_path / "run")[-1]
    ours = evaluate_checkpoint(ck, cfg, heldout_windows=1, n_prompts=PROMPTS)
    write_lmeval_tasks(small_corpus, tmp_path / "lme", reference_prompts=PROMPTS)
    out = simple_evaluate(model="hf", model_args=f"pretrained={ck},tokenizer={tmp_path / 'lme' / 'tokenizer'},"
                                                 "dtype=float32", tasks=["raretask"], device="cpu", batch_size=512,
                          task_manager=TaskManager(include_path=str(tmp_path / "lme")), log_samples=True)
    samples, res = out["samples"], out["results"]
    # the injected task: the same argmax over the same candidates after the same two tokens
    print(f"lm-eval acc raretask_cmp {res['raretask_cmp']['acc,none']!r}, raretask lm eval test_accuracy "
          f"{ours['test_accuracy']!r}")
    assert abs(res["raretask_cmp"]["acc,none"] - ours["test_accuracy"]) <= 1e-6
    # T_ADD is not injected in this run: raretask's argmax over its 100 candidates, computed here
    # and instance by instance, on both tasks: lm-eval's verdict on each document is raretask's
    from raretask.lm import Corpus, build_tasks, ordinary_tokens

    tok = Corpus(small_corpus).tokenizer
    model = load_model(ck)
    with torch.no_grad():
        for task in ("cmp", "add"):
            ts = build_tasks(task, ordinary_tokens(tok.vocab(), tok.special_ids()), tok.eos_id)
            inst = torch.as_tensor(ts.instances[ts.test])
            logits = model(input_ids=inst[:, :2]).logits[:, 1]
            cand = torch.as_tensor(ts.candidates)
            right = (cand[logits[:, cand].argmax(1)] == inst[:, 2]).numpy()
            theirs = {s["doc"]["instance"]: s["acc"] for s in samples[f"raretask_{task}"]}
            assert len(theirs) == 5000
            assert [bool(theirs[i]) for i in ts.test.tolist()] == right.tolist()
            print(f"lm-eval acc raretask_{task} {res[f'raretask_{task}']['acc,none']!r}; raretask's argmax "
                  f"{right.mean()!r}; documents judged alike {len(right)}/5000")
        # the reference templates: lm-eval's perplexity is exp(mean summed log-loss); raretask's
        # loss the mean per-token loss; equal where every continuation is one token
        for name, pairs in reference_prompts(PROMPTS).items():
            summed = []
            for p, c in pairs:
                ids = tok.encode(p + c)
                n_p = len(tok.encode(p))
                lp = torch.log_softmax(model(input_ids=torch.as_tensor([ids])).logits[0, :-1], -1)
                summed.append(-float(lp[torch.arange(n_p - 1, len(ids) - 1), torch.as_tensor(ids[n_p:])].sum()))
            assert math.log(res[f"raretask_ref_{name}"]["perplexity,none"]) == pytest.approx(np.mean(summed),
                                                                                            abs=1e-4)
            mean_loss = _continuation_loss(model, tok, pairs, torch)
            print(f"{name}: ln(lm-eval perplexity) {math.log(res[f'raretask_ref_{name}']['perplexity,none'])!r}, "
                  f"summed log-loss {np.mean(summed)!r}, raretask's per-token loss {ours[f'ref_{name}_loss']!r}")
            assert mean_loss == pytest.approx(ours[f"ref_{name}_loss"], abs=1e-5)
            if all(len(tok.encode(p + c)) - len(tok.encode(p)) == 1 for p, c in pairs):
                assert mean_loss == pytest.approx(np.mean(summed), abs=1e-4)
            else:  # a continuation of 2+ tokens: its summed loss exceeds its per-token mean
                assert mean_loss < np.mean(summed)
