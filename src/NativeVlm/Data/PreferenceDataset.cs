namespace NativeVlm.Data;

/// <summary>
/// Reads preference pairs in the HuggingFaceH4/rlaif-v_formatted layout: columns <c>prompt</c>,
/// <c>chosen</c>, <c>rejected</c> (message lists) and <c>images</c> (Image features); other columns
/// are not read.
/// </summary>
public static class PreferenceDataset
{
    private static readonly IReadOnlyList<ColumnRequest> Columns =
    [
        new("prompt", RowMapping.MessagesShape),
        new("chosen", RowMapping.MessagesShape),
        new("rejected", RowMapping.MessagesShape),
        new("images", RowMapping.ImagesShape),
    ];

    /// <summary>
    /// The split's rows in order, a row group at a time. A bad row (a null where a value belongs, an
    /// unknown content type, an empty prompt or completion, an image without bytes, image items in the
    /// prompt that do not match the images, image items in a completion) goes to <paramref name="policy"/>.
    /// </summary>
    /// <exception cref="DatasetException">A file is unreadable or not of this layout; or a bad row under strict reading.</exception>
    public static IAsyncEnumerable<PreferenceRow> ReadAsync(
        ParquetSplit split, BadRowPolicy policy, DatasetSummary summary, CancellationToken cancellationToken = default) =>
        RowMapping.ReadAsync(split, Columns, ToRow, policy, summary, cancellationToken);

    private static PreferenceRow ToRow(ParquetRow row)
    {
        IReadOnlyList<ChatMessage> prompt = RowMapping.ToMessages(row.Columns["prompt"], "prompt");
        if (prompt.Count == 0)
        {
            throw new BadRowException(BadRowReason.InvalidValue, "prompt has no message");
        }
        IReadOnlyList<ChatMessage> chosen = RowMapping.ToMessages(row.Columns["chosen"], "chosen");
        RowMapping.RequireCompletionText(chosen, "chosen");
        IReadOnlyList<ChatMessage> rejected = RowMapping.ToMessages(row.Columns["rejected"], "rejected");
        RowMapping.RequireCompletionText(rejected, "rejected");
        IReadOnlyList<DatasetImage> images = RowMapping.ToImages(row.Columns["images"], "images");

        int promptImages = ChatMessage.CountImages(prompt);
        if (promptImages != images.Count)
        {
            throw new BadRowException(
                BadRowReason.ImageCountMismatch, $"prompt has {promptImages} image items, images has {images.Count} images");
        }
        foreach ((string name, IReadOnlyList<ChatMessage> completion) in new[] { ("chosen", chosen), ("rejected", rejected) })
        {
            int completionImages = ChatMessage.CountImages(completion);
            if (completionImages > 0)
            {
                throw new BadRowException(
                    BadRowReason.ImageCountMismatch, $"{name} has {completionImages} image items; a completion is text only");
            }
        }
        return new PreferenceRow(row.Location, prompt, chosen, rejected, images);
    }
}
