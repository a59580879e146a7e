using System.Runtime.CompilerServices;
using NativeVlm.Data;

namespace NativeVlm.Batches;

/// <summary>What a run trains: preference pairs (DPO) or conversations (SFT).</summary>
public enum TrainingObjective
{
    Dpo,
    Sft,
}

/// <summary>
/// A dataset streamed into samples, row by row, as the dry run and the training loop read it. DPO
/// reads parquet in the rlaif-v layout; SFT reads parquet in the_cauldron layout, or image/caption
/// JSON lists (files ending in .json). Rows come in file order; bad rows go to the policy and are
/// counted in the summary.
/// </summary>
public static class TrainingSamples
{
    public const string CaptionListExtension = ".json";

    /// <param name="paths">One parquet file or dataset folder, or several parquet files read in order as the split "train".</param>
    /// <param name="split">A split specification such as <c>train[:6%]</c>.</param>
    public static async IAsyncEnumerable<DpoSample> ReadDpoAsync(
        SampleBuilder builder, IReadOnlyList<string> paths, string split, BadRowPolicy policy, DatasetSummary summary,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (paths.Any(IsCaptionList))
        {
            throw new ArgumentException("DPO reads preference pairs from parquet (the rlaif-v layout); an image/caption JSON list has no rejected completion");
        }
        ParquetSplit rows = await OpenSplitAsync(paths, split, cancellationToken).ConfigureAwait(false);
        await foreach (PreferenceRow row in PreferenceDataset.ReadAsync(rows, policy, summary, cancellationToken).ConfigureAwait(false))
        {
            if (builder.BuildDpo(row, policy, summary) is { } sample)
            {
                yield return sample;
            }
        }
    }

    /// <param name="paths">Parquet as for <see cref="ReadDpoAsync"/>, or image/caption JSON lists (then the split must be plain "train").</param>
    public static async IAsyncEnumerable<SftSample> ReadSftAsync(
        SampleBuilder builder, IReadOnlyList<string> paths, string split, BadRowPolicy policy, DatasetSummary summary,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (paths.Count > 0 && paths.All(IsCaptionList))
        {
            if (split != "train")
            {
                throw new ArgumentException($"split '{split}': image/caption JSON lists are read whole (split 'train')");
            }
            foreach (string path in paths)
            {
                await foreach (CaptionedRow row in CaptionListDataset.ReadAsync(path, policy, summary, cancellationToken).ConfigureAwait(false))
                {
                    if (builder.BuildSft(row, policy, summary) is { } sample)
                    {
                        yield return sample;
                    }
                }
            }
            yield break;
        }
        if (paths.Any(IsCaptionList))
        {
            throw new ArgumentException("the data mixes image/caption JSON lists with parquet; give one kind");
        }
        ParquetSplit rows = await OpenSplitAsync(paths, split, cancellationToken).ConfigureAwait(false);
        await foreach (ConversationRow row in ConversationDataset.ReadAsync(rows, policy, summary, cancellationToken).ConfigureAwait(false))
        {
            if (builder.BuildSft(row, policy, summary) is { } sample)
            {
                yield return sample;
            }
        }
    }

    private static bool IsCaptionList(string path) =>
        File.Exists(path) && path.EndsWith(CaptionListExtension, StringComparison.OrdinalIgnoreCase);

    private static Task<ParquetSplit> OpenSplitAsync(IReadOnlyList<string> paths, string split, CancellationToken cancellationToken) => paths.Count switch
    {
        0 => throw new ArgumentException("no data given"),
        1 => ParquetSplit.OpenAsync(paths[0], split, cancellationToken),
        _ => ParquetSplit.OpenFilesAsync(paths, split, cancellationToken),
    };
}
