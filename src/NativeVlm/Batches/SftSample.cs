using NativeVlm.Data;

namespace NativeVlm.Batches;

/// <summary>
/// One supervised sample: the whole conversation's tokens (images expanded) and its labels, the token
/// itself where the loss counts it and −100 (<see cref="SampleBuilder.IgnoreIndex"/>) elsewhere, already
/// truncated to max_length. Images are null for a text-only conversation.
/// </summary>
public sealed record SftSample(RowLocation Location, int[] InputIds, int[] Labels, SampleImages? Images)
{
    public int TokenCount => InputIds.Length;
}
