"""The merge stage: a recipe (recipe, weights, presets, elemental, adjust) becomes a plan (plan),
which the engine runs through the pipeline into io; provenance writes the recipe into the file,
replay and inspect read it back."""
