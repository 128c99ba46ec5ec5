"""The built-in demo: four synthetic agencies holding overlapping records of one made-up population.

``linkage.demo.generate.generate_demo`` writes their extracts and the ground truth. Every name,
address and identifier in them is invented; the name lists in ``names/`` are frequency-weighted
vocabularies, not records of people.
"""
