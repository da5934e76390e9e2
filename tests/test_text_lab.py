"""The text lab's pieces: tokenizers, BERT's corruption, shared initial weights, and perplexity against hand-computed cases."""

import math
from collections import Counter

import pytest
import torch

from ssl_studio.engine.text_eval import perplexity, perplexity_protocol, unigram_nll
from ssl_studio.models.text_lm import TextTransformer
from ssl_studio.models.text_tokenizers import _WORD, MASK_ID, TEXT_SPECIALS, BPETokenizer, CharTokenizer, tokenizer_from_json
from ssl_studio.objectives.base import ObjectiveContext
from ssl_studio.objectives.language import bert_corruption
from ssl_studio.objectives.text_lm import CausalLM, CausalLMParams, MaskedLM, MaskedLMParams

TEXT = ["the cat sat on the mat. the cat ate the rat.", "then the hat sat on the cat, and that was that."] * 3


def test_bpe_learns_frequent_pairs_deterministically_and_round_trips():
    a, b = BPETokenizer.learn(TEXT, 60), BPETokenizer.learn(list(TEXT), 60)
    assert a == b and a.merges == b.merges  # a function of the text alone
    words = [w for t in TEXT for w in _WORD.findall(t)]
    pairs = Counter(p for w in words for p in zip(w, w[1:]))
    assert a.merges[0] == min(pairs, key=lambda p: (-pairs[p], p))  # the most frequent pair, ties to the first in order
    assert " the" in a.stoi  # merged into one token
    text = "the cat sat on the hat."
    ids = a.encode(text)
    assert a.decode(ids) == text and len(ids) < len(text)
    assert tokenizer_from_json(a.to_json()) == a


def test_char_tokenizer_maps_unseen_characters_to_unk_and_keeps_the_specials_first():
    tok = CharTokenizer.learn(["abc  ab\n"])
    assert tok.itos[: len(TEXT_SPECIALS)] == list(TEXT_SPECIALS)
    assert tok.decode(tok.encode("ab c")) == "ab c"
    assert tok.encode("abz")[-1] == TEXT_SPECIALS.index("<unk>")
    assert tokenizer_from_json(tok.to_json()) == tok


def test_bert_corruption_chooses_15_percent_and_splits_them_80_10_10():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(len(TEXT_SPECIALS), 500, (400, 100), generator=g)
    out, chosen = bert_corruption(tokens, torch.rand(400, 100, 3, generator=g), 500)
    assert (chosen.sum(1) == 15).all()  # exactly round(0.15 * 100) per row
    assert torch.equal(out[~chosen], tokens[~chosen])  # nothing else is touched
    masked = (out == MASK_ID) & chosen
    changed = (out != tokens) & ~masked & chosen
    n = chosen.sum().item()
    assert abs(masked.sum().item() / n - 0.8) < 0.02
    assert abs(changed.sum().item() / n - 0.1) < 0.02  # random tokens (a few land on the original and count as kept)
    assert (out[changed] >= len(TEXT_SPECIALS)).all()  # never a special token


def _pair(seed=0, vocab=40, context=8):
    ctx = ObjectiveContext(image_size=context)
    made = []
    for cls, params in ((CausalLM, CausalLMParams()), (MaskedLM, MaskedLMParams())):
        torch.manual_seed(seed)
        made.append(cls(TextTransformer(vocab, context, width=48, depth=1), params, ctx))
    return made


def test_both_objectives_start_from_the_same_weights_and_differ_in_attention_only():
    causal, masked = _pair()
    a, b = causal.state_dict(), masked.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    tokens = torch.randint(3, 40, (2, 8))
    # causal: a position's state ignores later tokens; bidirectional: it does not
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1 - 3) % 37 + 3
    sc, sc2 = causal.backbone.states(tokens, True), causal.backbone.states(changed, True)
    assert torch.allclose(sc[:, :-1], sc2[:, :-1], atol=1e-6)
    sm, sm2 = masked.backbone.states(tokens, False), masked.backbone.states(changed, False)
    assert not torch.allclose(sm[:, 0], sm2[:, 0], atol=1e-6)


def test_perplexity_and_unigram_against_hand_computed_values():
    assert perplexity(2 * math.log(4.0), 2) == pytest.approx(4.0)  # two tokens each at p = 1/4
    counts = torch.tensor([0, 0, 0, 3, 1])  # add-one: p = [1, 1, 1, 4, 2] / 9
    nll = unigram_nll(counts, torch.tensor([3, 4]))
    assert nll.tolist() == pytest.approx([math.log(9 / 4), math.log(9 / 2)])


class _Uniform(torch.nn.Module):
    """An 'objective' that gives every continuation token probability 1/10."""

    def heldout_scores(self, tokens, prompt):
        return {"next-token": torch.full((tokens.shape[0], tokens.shape[1] - prompt), math.log(10.0))}


class _Data:
    images = torch.randint(3, 10, (6, 8))
    val_index = torch.arange(2, 6)
    unigram = torch.ones(10)


def test_perplexity_protocol_scores_the_second_half_of_each_held_out_window():
    r = perplexity_protocol(_Uniform(), _Data(), torch.device("cpu"))
    assert r["perplexity"] == pytest.approx(10.0) and r["score"] == "next-token"
    assert r["tokens"] == 4 * 4 and r["prompt_tokens"] == 4
    assert r["unigram"] == pytest.approx(10.0)  # uniform counts over 10 ids


def test_heldout_scores_cover_the_continuation_and_masked_scores_hide_what_they_should():
    causal, masked = _pair()
    tokens = torch.randint(3, 40, (3, 8))
    c = causal.heldout_scores(tokens, 4)
    m = masked.heldout_scores(tokens, 4)
    assert c["next-token"].shape == (3, 4) and set(m) == {"left-to-right masked", "pseudo"}
    assert all(v.shape == (3, 4) and torch.isfinite(v).all() for v in m.values())
    # left-to-right masked scoring must not see the continuation: changing its last token leaves the first score
    later = tokens.clone()
    later[:, -1] = (later[:, -1] + 1 - 3) % 37 + 3
    assert torch.allclose(masked.heldout_scores(later, 4)["left-to-right masked"][:, 0], m["left-to-right masked"][:, 0], atol=1e-5)


def test_training_steps_give_finite_losses_near_log_vocab_at_init():
    from ssl_studio.objectives.base import Batch

    causal, masked = _pair()
    tokens = torch.randint(3, 40, (4, 8))
    batch = Batch(views=[tokens], images=tokens, indices=torch.arange(4))
    for obj in (causal, masked):
        out = obj.training_step(batch, 0.0)
        assert abs(out.loss.item() - math.log(40)) < 1.0 and "token_acc" in out.metrics
        assert set(out.metrics) == set(obj.metric_specs)
