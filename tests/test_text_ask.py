"""Asking the text lab's models (engine/text_answers.py) on hand-made tiny networks: continuation lengths, fills
that are probabilities, the causal ranking against a hand computation, and the one-sentence refusals."""

import queue

import pytest
import torch

from ssl_studio.engine.text_answers import (AskSettings, answer, answer_lines, causal_log_likelihood, causal_ranking,
                                            encode_with_masks, masked_fills)
from ssl_studio.models.text_lm import TextTransformer
from ssl_studio.models.text_tokenizers import MASK_ID, TEXT_SPECIALS, BPETokenizer, CharTokenizer
from ssl_studio.objectives.base import ObjectiveContext
from ssl_studio.objectives.text_lm import MaskedLM, MaskedLMParams
from ssl_studio.params import ConfigError

TEXT = ["the cat sat on the mat. the dog sat on the log. the cat ate the rat."] * 4
CONTEXT = 12


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.learn(TEXT, 70)


def _model(tok, seed):
    torch.manual_seed(seed)
    return TextTransformer(tok.vocab_size, CONTEXT, width=48, depth=1, tokenizer=tok).eval()


@pytest.fixture(scope="module")
def models(tok):
    return _model(tok, 0), _model(tok, 1)


def test_a_mask_is_one_token_and_takes_the_space_before_it(tok):
    ids = encode_with_masks(tok, "the cat [MASK] on the mat.")
    assert ids.count(MASK_ID) == 1
    assert tok.decode(ids) == "the cat [MASK] on the mat."  # the decoder writes <mask> as " [MASK]"
    assert encode_with_masks(tok, "the cat sat") == tok.encode("the cat sat")
    chars = CharTokenizer.learn(TEXT)
    assert encode_with_masks(chars, "c[mask]t") == [chars.stoi["c"], MASK_ID, chars.stoi["t"]]


def test_both_models_continue_a_prompt_by_the_asked_number_of_tokens(models, tok):
    causal, masked = models
    settings = AskSettings(temperature=0, new_tokens=5)
    result = answer("the cat", causal, masked, settings)
    assert result["mode"] == "continue" and result["rule"].startswith("greedy")
    for key in ("causal", "masked"):
        tokens = result[key]["tokens"]
        assert len(tokens) == 5 and all(t >= len(TEXT_SPECIALS) for t in tokens)  # never a special token
    assert answer("the cat", causal, masked, settings) == result  # greedy: the same answer again
    sampled = AskSettings(temperature=1.0, top_k=5, new_tokens=5, seed=3)
    assert answer("the cat", causal, None, sampled)["causal"] == answer("the cat", causal, None, sampled)["causal"]
    assert "temperature 1 from the 5 likeliest" in answer_lines(answer("the cat", causal, None, sampled))[1]


def test_a_long_prompt_is_cut_to_leave_room_and_says_so(models):
    causal, _ = models
    result = answer("the cat sat on the mat. " * 6, causal, None, AskSettings(temperature=0, new_tokens=4))
    assert len(result["causal"]["tokens"]) == 4
    assert any("truncated to its last 8 tokens" in note for note in result["notes"])


def test_masked_fills_are_probabilities_of_ordinary_tokens_from_one_bidirectional_pass(models, tok):
    _, masked = models
    ids = encode_with_masks(tok, "the [MASK] sat on the [MASK].")
    fills = masked_fills(masked, ids, 4)
    assert len(fills) == 2
    with torch.no_grad():
        probs = torch.softmax(masked.logits(masked.states(torch.tensor([ids]), causal=False)[0]).float(), -1)
    for per, pos in zip(fills, [i for i, t in enumerate(ids) if t == MASK_ID]):
        values = [p for _, p in per]
        assert values == sorted(values, reverse=True) and 0 < sum(values) <= 1 + 1e-6
        assert all(t >= len(TEXT_SPECIALS) for t, _ in per)
        for t, p in per:
            assert p == pytest.approx(float(probs[pos, t]), rel=1e-5)


def test_the_causal_ranking_scores_the_sentence_by_hand_and_includes_the_masked_candidates(models, tok):
    causal, _ = models
    ids = encode_with_masks(tok, "the cat [MASK] on the mat.")
    pos = ids.index(MASK_ID)
    offered = [tok.stoi[" sat"], tok.stoi[" ate"]]
    ranked = causal_ranking(causal, ids, [offered], k=1000)[0]  # every ordinary token ranked
    tokens = [t for t, _ in ranked]
    assert set(offered) <= set(tokens)
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)
    sentence = ids[:pos] + [offered[0]] + ids[pos + 1:]
    with torch.no_grad():
        logp = torch.log_softmax(causal.logits(causal.states(torch.tensor([sentence]), causal=True)).float(), -1)[0]
    by_hand = sum(float(logp[p - 1, sentence[p]]) for p in range(pos, len(sentence)))
    assert dict(ranked)[offered[0]] == pytest.approx(by_hand, abs=1e-4)
    assert float(causal_log_likelihood(causal, torch.tensor([sentence]), pos)[0]) == pytest.approx(by_hand, abs=1e-4)


def test_a_sentence_with_masks_gets_fills_from_one_and_a_ranking_from_the_other(models):
    causal, masked = models
    result = answer("the [MASK] sat on the mat.", causal, masked, AskSettings(fills=3))
    assert result["mode"] == "fill"
    assert len(result["masked"]["masks"]) == len(result["causal"]["masks"]) == 1
    assert len(result["masked"]["masks"][0]) == 3 and sum(p for _, p in result["masked"]["masks"][0]) <= 1
    for key in ("masked", "causal"):  # the sentence with each model's first-ranked fill
        best = result[key]["best"]
        assert "[MASK]" not in best and result[key]["masks"][0][0][0] in best
    lines = answer_lines(result, {"causal": " (c)", "masked": " (m)"})
    assert any("top fills" in line and "(m)" in line for line in lines) and any("ranked" in line for line in lines)


@pytest.mark.parametrize("text, fragment", [
    ("", "is empty"),
    ("the cat é", "never saw ('é')"),
    ("the " + "[MASK] " * 9, "at most 8"),
])
def test_what_cannot_be_asked_is_refused_in_one_sentence(models, text, fragment):
    causal, masked = models
    with pytest.raises(ConfigError) as err:
        answer(text, causal, masked)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_two_vocabularies_or_bad_settings_are_refused(models):
    causal, _ = models
    other = TextTransformer(40, CONTEXT, width=48, depth=1, tokenizer=CharTokenizer.learn(TEXT))
    with pytest.raises(ConfigError, match="different vocabularies"):
        answer("the cat", causal, other)
    with pytest.raises(ConfigError, match="--temperature"):
        answer("the cat", causal, None, AskSettings(temperature=-1))


def test_a_live_masked_lm_hands_a_frozen_copy_of_its_network_to_the_ask_box(tok):
    objective = MaskedLM(_model(tok, 2), MaskedLMParams(), ObjectiveContext(image_size=CONTEXT))
    reply: queue.Queue = queue.Queue()
    assert objective.visual_request(torch.zeros(2, CONTEXT, dtype=torch.int64), {"kind": "text_model", "reply": reply}) == {}
    frozen = reply.get_nowait()
    assert frozen is not objective.backbone and not any(p.requires_grad for p in frozen.parameters())
    assert all(torch.equal(a, b) for a, b in zip(frozen.state_dict().values(), objective.backbone.state_dict().values()))
    with torch.no_grad():
        next(objective.backbone.parameters()).add_(1.0)  # training on does not change the copy
    assert not torch.equal(next(frozen.parameters()), next(objective.backbone.parameters()))
