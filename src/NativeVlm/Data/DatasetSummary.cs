namespace NativeVlm.Data;

/// <summary>
/// What one pass over a dataset met: the rows read from its files and, of those, the rows skipped by
/// reason. A dry run prints it; training prints it after the first epoch.
/// </summary>
public sealed class DatasetSummary
{
    private readonly Dictionary<BadRowReason, long> _skipped = [];

    /// <summary>Rows taken from the files, skipped ones included.</summary>
    public long RowsRead { get; private set; }

    public long RowsSkipped => _skipped.Values.Sum();

    public long RowsKept => RowsRead - RowsSkipped;

    /// <summary>Skipped rows per reason; a reason that never occurred is absent.</summary>
    public IReadOnlyDictionary<BadRowReason, long> SkippedByReason => _skipped;

    internal void CountRead() => RowsRead++;

    internal void CountSkipped(BadRowReason reason) => _skipped[reason] = _skipped.GetValueOrDefault(reason) + 1;

    /// <summary>"1000 rows read, 990 kept, 10 skipped (missing field: 4, empty completion: 6)".</summary>
    public override string ToString()
    {
        string counts = $"{RowsRead} rows read, {RowsKept} kept, {RowsSkipped} skipped";
        if (_skipped.Count == 0)
        {
            return counts;
        }
        IEnumerable<string> reasons = _skipped.OrderBy(pair => pair.Key).Select(pair => $"{Describe(pair.Key)}: {pair.Value}");
        return $"{counts} ({string.Join(", ", reasons)})";
    }

    public static string Describe(BadRowReason reason) => reason switch
    {
        BadRowReason.MissingField => "missing field",
        BadRowReason.WrongType => "wrong type",
        BadRowReason.InvalidValue => "invalid value",
        BadRowReason.EmptyCompletion => "empty completion",
        BadRowReason.MissingImage => "missing image",
        BadRowReason.ImageCountMismatch => "image count mismatch",
        BadRowReason.UndecodableImage => "undecodable image",
        BadRowReason.PromptOverMaxPromptLength => "prompt with its image tokens over max_prompt_length",
        BadRowReason.PromptOverMaxLength => "prompt with its image tokens leaves no room within max_length",
        BadRowReason.ImageTokensOverMaxLength => "image tokens past max_length",
        BadRowReason.NoLossTokenWithinMaxLength => "no loss token within max_length",
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, null),
    };
}
