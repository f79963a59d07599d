import torch

from models.gpt import GPT, GPTConfig, sequence_loss


def make_model(**overrides) -> GPT:
    cfg = GPTConfig(n_layer=2, n_head=2, d_model=32, context_length=16, vocab_size=50)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return GPT(cfg)


def test_logits_shape_and_tied_embeddings():
    model = make_model()
    logits = model(torch.randint(0, 50, (3, 16)))
    assert logits.shape == (3, 16, 50)
    assert model.lm_head.weight is model.token_embedding.weight


def test_attention_is_causal():
    model = make_model().eval()
    x = torch.randint(0, 50, (1, 16))
    changed = x.clone()
    changed[0, 10] = (x[0, 10] + 1) % 50
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:], atol=1e-6)


def test_parameter_count_and_flops():
    model = make_model()
    d, layers, vocab, ctx = 32, 2, 50, 16
    per_block = 12 * d * d + 13 * d  # qkv, proj, mlp weights+biases, two LayerNorms
    expected = vocab * d + ctx * d + layers * per_block + 2 * d  # + final LayerNorm
    assert model.num_params() == expected
    assert model.num_params(non_embedding=True) == expected - vocab * d - ctx * d
    assert model.flops_per_token() == 6 * (expected - ctx * d) + 12 * layers * d * ctx


def test_residual_projections_use_scaled_init():
    torch.manual_seed(0)
    model = make_model(n_layer=8, d_model=64)
    proj_std = model.blocks[0].mlp.proj.weight.std().item()
    fc_std = model.blocks[0].mlp.fc.weight.std().item()
    assert abs(fc_std - 0.02) < 0.002
    assert abs(proj_std - 0.02 / 4) < 0.001  # 0.02 / sqrt(2 * 8)


def test_loss_falls_on_a_learnable_sequence():
    torch.manual_seed(0)
    model = make_model()
    # A deterministic cyclic pattern: the next token is always (t + 3) mod 50.
    start = torch.randint(0, 50, (16, 1))
    tokens = (start + 3 * torch.arange(17)) % 50
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    initial = sequence_loss(model, tokens).mean().item()
    for _ in range(60):
        loss = sequence_loss(model, tokens).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert initial > 3.5  # about ln(50) at init
    assert loss.item() < 0.5


def test_sequence_loss_is_per_sequence():
    model = make_model()
    tokens = torch.randint(0, 50, (4, 17))
    losses = sequence_loss(model, tokens)
    assert losses.shape == (4,)
    assert torch.allclose(losses[1], sequence_loss(model, tokens[1:2])[0], atol=1e-5)
