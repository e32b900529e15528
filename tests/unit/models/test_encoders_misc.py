def test_cuda_graph_buckets_cover_every_batch_up_to_the_micro_batch_size() -> None:
    from models.encoders.cuda_graphs import buckets_up_to

    assert buckets_up_to(32) == [1, 2, 4, 8, 16, 32]
    assert buckets_up_to(24) == [1, 2, 4, 8, 16, 24]
    assert buckets_up_to(1) == [1]
    for largest in (1, 5, 32, 100):
        sizes = buckets_up_to(largest)
        assert all(any(b >= n for b in sizes) for n in range(1, largest + 1))
        assert max(sizes) == largest


def test_length_groups_pick_the_cheapest_runs_of_similar_length() -> None:
    """Exact against brute force over every way to cut a sorted batch into runs; every
    row once, in order, no run over the size limit."""
    import itertools
    import random

    from models.encoders.onnx import length_groups

    def cost(runs: list[tuple[int, int]], lengths: list[int], extra: float) -> float:
        return sum(extra + (end - start) * lengths[start] for start, end in runs)

    rng = random.Random(7)
    for _ in range(200):
        n, max_size, extra = rng.randint(1, 9), rng.randint(1, 5), rng.choice([0.0, 4.0, 50.0])
        lengths = sorted((rng.randint(2, 40) for _ in range(n)), reverse=True)
        runs = length_groups(lengths, max_size, extra)
        assert [i for s, e in runs for i in range(s, e)] == list(range(n))
        assert all(0 < e - s <= max_size for s, e in runs)
        cheapest = min(
            cost(list(zip((0, *cuts), (*cuts, n), strict=True)), lengths, extra)
            for k in range(n)
            for cuts in itertools.combinations(range(1, n), k)
            if all(e - s <= max_size for s, e in zip((0, *cuts), (*cuts, n), strict=True))
        )
        assert cost(runs, lengths, extra) == cheapest
    assert length_groups([], 32) == []
    # one long prompt among short ones runs alone; equal lengths fill runs up to the limit
    assert length_groups([120, 12, 12, 11, 10], 32) == [(0, 1), (1, 5)]
    equal = length_groups([9] * 40, 32)
    assert len(equal) == 2 and max(e - s for s, e in equal) <= 32
