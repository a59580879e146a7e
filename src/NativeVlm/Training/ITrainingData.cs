namespace NativeVlm.Training;

/// <summary>
/// A map-style dataset as the trainer sees it: <see cref="Count"/> samples, and the batch made of
/// the samples at given indices (the trainer picks the indices: shuffled per epoch, in order for eval).
/// </summary>
public interface ITrainingData<out TBatch>
{
    int Count { get; }

    TBatch Collate(IReadOnlyList<int> indices);
}

/// <summary>Samples held in memory and the collator that batches them.</summary>
public sealed class SampleList<TSample, TBatch>(IReadOnlyList<TSample> samples, Func<IReadOnlyList<TSample>, TBatch> collate)
    : ITrainingData<TBatch>
{
    public int Count => samples.Count;

    public TBatch Collate(IReadOnlyList<int> indices) => collate(indices.Select(i => samples[i]).ToList());
}
