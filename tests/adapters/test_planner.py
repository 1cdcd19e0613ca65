import pytest

from tinyeval.adapters import plan
from tinyeval.adapters.planner import choose_tying, find_targets
from tinyeval.errors import TinyevalError
from tinyeval.models import load_config


@pytest.mark.parametrize("alias,layers,budgets", [
    ("qwen2.5-7b", 28, {13: 13, 49: 49, 196: 196, 392: 392}),  # paper Table 2, Qwen2.5-7B-Instruct
    ("qwen2.5-3b", 36, {16: 16, 63: 63, 252: 252, 504: 504}),  # paper Table 2, Qwen2.5-3B-Instruct
])
def test_table2_counts_from_config_alone(alias, layers, budgets):
    config = load_config(alias)
    for budget, expected in budgets.items():
        p = plan(config, budget)
        assert p.modules == layers * 7
        assert p.trainable == expected == p.groups * p.u
        assert p.bytes_fp32 == 4 * expected and p.bytes_bf16 == 2 * expected


def test_13_parameters_on_qwen7b():
    p = plan(load_config("qwen2.5-7b"), 13)
    assert (p.u, p.n_tie, p.groups, p.trainable, p.bytes_bf16, p.bytes_fp32) == (1, 16, 13, 13, 26, 52)
    assert len(p.members) == 13 and [len(g) for g in p.members] == [16] * 12 + [4]
    assert p.members[0][:8] == tuple(f"model.layers.0.{m}" for m in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")) + ("model.layers.1.self_attn.q_proj",)


def test_u_is_exhausted_before_tying():
    config = load_config("qwen2.5-7b")
    assert (plan(config, 100_352).u, plan(config, 100_352).n_tie) == (512, 1)  # Table 2's 100,352 row
    assert (plan(config, 300).u, plan(config, 300).trainable) == (1, 196)
    assert plan(config, 195).n_tie == 2 and plan(config, 195).trainable == 98
    assert [plan(config, n).trainable for n in (1, 2, 4, 7, 25)] == [1, 2, 4, 7, 25]  # Fig. 1 points


def test_other_methods_counted_like_the_paper():
    config = load_config("qwen2.5-7b")
    assert plan(config, method="lora", rank=1).trainable == 2_523_136  # "LoRA r1 (2.52M)"
    assert plan(config, method="lora-xs", rank=2).trainable == 196 * 4
    assert 7.6e9 < plan(config, method="full").trainable < 7.7e9


def test_tiled_vs_structured_groups_on_tiny_llama(make_llama):
    targets = find_targets(make_llama(layers=3), ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                  "up_proj", "down_proj"))
    names = [t.name.split("layers.")[1] for t in targets]
    u, n_tie, tiled = choose_tying(targets, 7, "tiled")  # 21 modules -> 3 per group
    assert (u, n_tie, len(tiled)) == (1, 3, 7)
    assert [names[i] for i in tiled[1]] == ["0.self_attn.o_proj", "0.mlp.gate_proj", "0.mlp.up_proj"]
    assert [names[i] for i in tiled[2]] == ["0.mlp.down_proj", "1.self_attn.q_proj", "1.self_attn.k_proj"]
    u, n_tie, structured = choose_tying(targets, 7, "structured")  # one group per type, all 3 depths
    assert (u, n_tie, len(structured)) == (1, 3, 7)
    for g in structured:
        assert len({targets[i].kind for i in g}) == 1 and [targets[i].block for i in g] == [0, 1, 2]
    _, n_tie, structured = choose_tying(targets, 14, "structured")  # two groups per type: depth {0,1}, {2}
    assert n_tie == 2 and [[targets[i].block for i in g] for g in structured[:2]] == [[0, 1], [2]]


def test_structured_budget_below_one_per_type_is_a_clear_error(make_llama):
    targets = find_targets(make_llama(), ("q_proj", "k_proj", "v_proj"))
    with pytest.raises(TinyevalError, match="at least 3"):
        choose_tying(targets, 2, "structured")


def test_cli_plan_json(capsys):
    import json

    from tinyeval.adapters.commands import plan as plan_cmd

    plan_cmd(model="qwen2.5-7b", params=13, tying="tiled", rank=2, method="tinylora", as_json=True)
    [row] = json.loads(capsys.readouterr().out)
    assert row["trainable"] == 13 and row["bytes_bf16"] == 26 and row["u"] == 1 and row["n_tie"] == 16
