"""``redblue.demo.run_tour`` on the embedded organism (the CLI test runs it on a tiny model)."""

from __future__ import annotations

from redblue.demo import TourConfig, run_tour
from redblue.evaluate.store import RunStore


def test_the_tour_attacks_an_organism_with_its_held_out_wrappers(organism, tmp_path) -> None:
    from redblue.attacks.templates import organism_templates
    from redblue.organism.recipe import recipe_of_model

    model, tokenizer, _ = organism
    store = RunStore(tmp_path)
    config = TourConfig(n_prompts=4, n_train=16, n_val=8, max_new_tokens=8, progress=False)
    steps = run_tour(model, tokenizer, store, config, model_id="organism")
    templates = next(s for s in steps if s.kind == "attack" and s.name == "templates")
    run = store.get(templates.run_id)
    assert run.spec.config["source"] == "organism:unseen"
    assert run.spec.config["n_templates"] is None  # every one of them
    assert len(organism_templates("unseen", recipe_of_model(model))) == 9
    assert templates.headline.endswith("/4)")  # best of the wrappers, per prompt
