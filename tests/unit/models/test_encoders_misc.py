def test_cuda_graph_buckets_cover_every_batch_up_to_the_micro_batch_size() -> None:
    from models.encoders.cuda_graphs import buckets_up_to

    assert buckets_up_to(32) == [1, 2, 4, 8, 16, 32]
    assert buckets_up_to(24) == [1, 2, 4, 8, 16, 24]
    assert buckets_up_to(1) == [1]
    for largest in (1, 5, 32, 100):
        sizes = buckets_up_to(largest)
        assert all(any(b >= n for b in sizes) for n in range(1, largest + 1))
        assert max(sizes) == largest
