namespace NativeVlm.Data;

/// <summary>
/// What happens to a bad row: skipped, counted and reported to the caller's sink, or (strict) an
/// exception naming the file and row. Never silent: skipping needs a sink.
/// </summary>
public sealed class BadRowPolicy
{
    private readonly Action<BadRow>? _warn;

    private BadRowPolicy(Action<BadRow>? warn) => _warn = warn;

    /// <summary>The first bad row throws a <see cref="DatasetException"/> (the CLI's --strict).</summary>
    public static BadRowPolicy Strict { get; } = new(null);

    /// <summary>Bad rows are skipped; each is counted in the summary and passed to <paramref name="warn"/>.</summary>
    public static BadRowPolicy SkipAndWarn(Action<BadRow> warn) => new(warn ?? throw new ArgumentNullException(nameof(warn)));

    /// <summary>Skips <paramref name="badRow"/> (counted in <paramref name="summary"/>, reported) or throws.</summary>
    public void Reject(BadRow badRow, DatasetSummary summary)
    {
        if (_warn is null)
        {
            throw new DatasetException(badRow);
        }
        summary.CountSkipped(badRow.Reason);
        _warn(badRow);
    }
}
