"""The CPU training attention (bertpipe.modeling.bf16_eager_attention) against transformers' eager."""

import json

import torch
from transformers import BertConfig, BertForSequenceClassification
from transformers.models.bert.modeling_bert import eager_attention_forward

from bertpipe.modeling import CPU_ATTENTION, autocast, bf16_eager_attention, register_cpu_attention
from stages.train import build_model


class Module(torch.nn.Module):
    training = False


def qkv_and_mask(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 4, 24, 8, generator=g) for _ in range(3))  # (B, H, T, d)
    mask = torch.zeros(2, 1, 24, 24)
    mask[1, :, :, 17:] = torch.finfo(torch.float32).min  # the second row is padded after 17 tokens
    return q, k, v, mask


def test_fp32_matches_transformers_eager():
    q, k, v, mask = qkv_and_mask()
    ours, ours_probs = bf16_eager_attention(Module(), q, k, v, mask)
    ref, ref_probs = eager_attention_forward(Module(), q, k, v, mask)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours_probs, ref_probs)
    assert float(ours_probs[1, :, :, 17:].abs().max()) == 0.0  # padding gets no attention


def test_bf16_autocast_keeps_the_scores_in_bf16():
    q, k, v, mask = qkv_and_mask()
    with autocast(torch.device("cpu"), torch.bfloat16):
        ours, ours_probs = bf16_eager_attention(Module(), q, k, v, mask)
        _, ref_probs = eager_attention_forward(Module(), q, k, v, mask)
    fp32, _ = eager_attention_forward(Module(), q, k, v, mask)
    assert ref_probs.dtype == torch.float32  # the fp32 mask promoted transformers' scores
    assert ours_probs.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), fp32, atol=3e-2, rtol=3e-2)


def test_a_model_trains_the_same_with_it():
    """Logits and gradients of a small BERT: ours under bf16 autocast against eager in fp32."""
    register_cpu_attention()
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0)
    torch.manual_seed(0)
    ref = BertForSequenceClassification(config).eval()
    ours = BertForSequenceClassification(config).eval()
    ours.load_state_dict(ref.state_dict())
    ours.set_attn_implementation(CPU_ATTENTION)
    ref.set_attn_implementation("eager")
    ids = torch.randint(1, 100, (3, 16))
    mask = torch.ones(3, 16, dtype=torch.long)
    mask[2, 9:] = 0
    labels = torch.tensor([0, 1, 1])
    out_ref = ref(input_ids=ids, attention_mask=mask, labels=labels)
    with autocast(torch.device("cpu"), torch.bfloat16):
        out = ours(input_ids=ids, attention_mask=mask, labels=labels)
    out_ref.loss.backward()
    out.loss.backward()
    torch.testing.assert_close(out.logits.float(), out_ref.logits, atol=5e-2, rtol=5e-2)
    g_ref = torch.cat([w.grad.flatten() for w in ref.parameters() if w.grad is not None])
    g = torch.cat([w.grad.flatten() for w in ours.parameters() if w.grad is not None])
    assert torch.nn.functional.cosine_similarity(g, g_ref, dim=0) > 0.99


def test_checkpoints_do_not_name_it(tmp_path):
    """The train stage uses it on a CPU, but a saved checkpoint loads anywhere without bertpipe."""
    model = build_model("embedded:minilm-l6", "", ["negative", "positive"], torch.device("cpu"))
    assert model.config._attn_implementation == CPU_ATTENTION
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert CPU_ATTENTION not in json.dumps(config)
