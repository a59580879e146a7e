namespace NativeVlm.Data;

/// <summary>
/// Reads conversations in the HuggingFaceM4/the_cauldron layout: columns <c>images</c> (Image
/// features) and <c>texts</c> (<c>list&lt;struct&lt;user, assistant, source&gt;&gt;</c>); other columns are not read.
/// </summary>
public static class ConversationDataset
{
    private static readonly IReadOnlyList<ColumnRequest> Columns =
    [
        new("images", RowMapping.ImagesShape),
        new("texts", ColumnShape.ListOf(ColumnShape.StructOf("user", "assistant", "source"))),
    ];

    /// <summary>
    /// The split's rows in order, a row group at a time. A bad row (a null images list or image, an
    /// image without bytes, no turn, a null user or assistant text, a blank assistant text) goes to
    /// <paramref name="policy"/>.
    /// </summary>
    /// <exception cref="DatasetException">A file is unreadable or not of this layout; or a bad row under strict reading.</exception>
    public static IAsyncEnumerable<ConversationRow> ReadAsync(
        ParquetSplit split, BadRowPolicy policy, DatasetSummary summary, CancellationToken cancellationToken = default) =>
        RowMapping.ReadAsync(split, Columns, ToRow, policy, summary, cancellationToken);

    private static ConversationRow ToRow(ParquetRow row)
    {
        IReadOnlyList<DatasetImage> images = RowMapping.ToImages(row.Columns["images"], "images");
        IReadOnlyList<object?> texts = RowMapping.RequireList(row.Columns["texts"], "texts");
        if (texts.Count == 0)
        {
            throw new BadRowException(BadRowReason.InvalidValue, "texts has no turn");
        }
        var turns = new List<ConversationTurn>(texts.Count);
        for (int i = 0; i < texts.Count; i++)
        {
            string path = $"texts[{i}]";
            IReadOnlyDictionary<string, object?> turn = RowMapping.RequireStruct(texts[i], path);
            string user = RowMapping.RequireText(turn["user"], $"{path}.user");
            string assistant = RowMapping.RequireText(turn["assistant"], $"{path}.assistant");
            if (string.IsNullOrWhiteSpace(assistant))
            {
                throw new BadRowException(BadRowReason.EmptyCompletion, $"{path}.assistant has no text");
            }
            turns.Add(new ConversationTurn(user, assistant, turn["source"] as string));
        }
        return new ConversationRow(row.Location, images, turns);
    }
}
