namespace NativeVlm.Data;

/// <summary>
/// A dataset file that cannot be read as it is, or a bad row under strict reading: the message starts
/// with the file and, where the fault is one row's, the row ("train-00000-of-00002.parquet: row 17: ...").
/// </summary>
public sealed class DatasetException : Exception
{
    public DatasetException(string filePath, long? row, string detail, Exception? innerException = null)
        : base(row is null ? $"{filePath}: {detail}" : $"{filePath}: row {row}: {detail}", innerException)
    {
        FilePath = filePath;
        Row = row;
    }

    internal DatasetException(BadRow badRow)
        : this(badRow.Location.FilePath, badRow.Location.Row, badRow.Detail)
    {
        Reason = badRow.Reason;
    }

    /// <summary>The file at fault.</summary>
    public string FilePath { get; }

    /// <summary>The row at fault, 0-based inside the file; null when the fault is the file's.</summary>
    public long? Row { get; }

    /// <summary>What is wrong with the row, when this is a bad row met under strict reading.</summary>
    public BadRowReason? Reason { get; }
}
