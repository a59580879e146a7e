using NativeVlm.Data;
using Xunit;
using static NativeVlm.Tests.Data.DatasetTestReads;
using static NativeVlm.Tests.Data.DuckDbParquet;

namespace NativeVlm.Tests.Data;

/// <summary>HuggingFaceM4/the_cauldron-shaped parquet, written by DuckDB and by Parquet.Net, read back field by field.</summary>
public class ConversationDatasetTests
{
    [Fact]
    public async Task A_DuckDB_file_of_several_row_groups_reads_back_every_field()
    {
        using var dir = new TempDirectory();
        string path = dir.Path("train-00000-of-00012-0496147841e1c23a.parquet");
        const int rowCount = 4500;
        Write(path, ConversationColumns, Enumerable.Range(0, rowCount).Select(i => ConversationTuple(SampleRows.Conversation(i))));
        // DuckDB cuts row groups of 2048 rows or more, where its threads end their batches.
        Assert.True(await RowGroupCountAsync(path) > 1);

        var summary = new DatasetSummary();
        ParquetSplit split = await ParquetSplit.OpenAsync(path);
        List<ConversationRow> rows = await ToListAsync(ConversationDataset.ReadAsync(split, BadRowPolicy.Strict, summary));

        Assert.Equal(rowCount, rows.Count);
        for (int i = 0; i < rowCount; i++)
        {
            Assert.Equal(new RowLocation(path, i), rows[i].Location);
            SampleRows.AssertSame(SampleRows.Conversation(i), rows[i]);
        }
        Assert.Equal("4500 rows read, 4500 kept, 0 skipped", summary.ToString());
    }

    [Theory]
    [InlineData("element")]
    [InlineData("item")]
    public async Task A_Parquet_Net_file_in_Hugging_Face_layout_reads_back_every_field(string elementName)
    {
        using var dir = new TempDirectory();
        string path = dir.Path("cauldron.parquet");
        await NetParquet.WriteConversationAsync(path, Enumerable.Range(0, 9).Select(SampleRows.Conversation), rowGroupSize: 4, elementName);
        Assert.Equal(3, await RowGroupCountAsync(path));

        ParquetSplit split = await ParquetSplit.OpenAsync(path);
        List<ConversationRow> rows = await ToListAsync(ConversationDataset.ReadAsync(split, BadRowPolicy.Strict, new DatasetSummary()));

        Assert.Equal(9, rows.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            Assert.Equal(new RowLocation(path, i), rows[i].Location);
            SampleRows.AssertSame(SampleRows.Conversation(i), rows[i]);
        }
    }

    [Fact]
    public void The_messages_carry_one_image_item_per_image_at_the_start_of_the_first_user_message()
    {
        ConversationRow row = SampleRows.Conversation(3);

        IReadOnlyList<ChatMessage> messages = row.ToMessages();

        ContentItem image = ContentItem.ImagePlaceholder;
        SampleRows.AssertSame(
            [
                new ChatMessage("user", [image, image, ContentItem.FromText("user 3.0 ü")]),
                new ChatMessage("assistant", [ContentItem.FromText("assistant 3.0 𝐀")]),
                new ChatMessage("user", [ContentItem.FromText("")]),
                new ChatMessage("assistant", [ContentItem.FromText("assistant 3.1 𝐀")]),
                new ChatMessage("user", [ContentItem.FromText("user 3.2 ü")]),
                new ChatMessage("assistant", [ContentItem.FromText("assistant 3.2 𝐀")]),
                new ChatMessage("user", [ContentItem.FromText("user 3.3 ü")]),
                new ChatMessage("assistant", [ContentItem.FromText("assistant 3.3 𝐀")]),
            ],
            messages);
        Assert.Equal(row.Images.Count, ChatMessage.CountImages(messages));
    }

    private static readonly string Good = ConversationTuple(SampleRows.Conversation(1));
    private const string OneImage = "[{'bytes': '\\x01'::BLOB, 'path': NULL}]";
    private const string OneTurn = "[{'user': 'q', 'assistant': 'a', 'source': 's'}]";

    private static readonly (string Row, BadRowReason Reason, string Detail)[] BadRows =
    [
        ($"(NULL, {OneTurn})", BadRowReason.MissingField, "images is null"),
        ($"([NULL], {OneTurn})", BadRowReason.MissingImage, "images[0] is null"),
        ($"([{{'bytes': NULL, 'path': NULL}}], {OneTurn})", BadRowReason.MissingImage, "images[0] has no bytes"),
        ($"({OneImage}, NULL)", BadRowReason.MissingField, "texts is null"),
        ($"({OneImage}, [])", BadRowReason.InvalidValue, "texts has no turn"),
        ($"({OneImage}, [{{'user': 'q', 'assistant': 'a', 'source': 's'}}, NULL])", BadRowReason.MissingField, "texts[1] is null"),
        ($"({OneImage}, [{{'user': NULL, 'assistant': 'a', 'source': 's'}}])", BadRowReason.MissingField, "texts[0].user is null"),
        ($"({OneImage}, [{{'user': 'q', 'assistant': NULL, 'source': 's'}}])", BadRowReason.MissingField, "texts[0].assistant is null"),
        ($"({OneImage}, [{{'user': 'q', 'assistant': '', 'source': 's'}}])", BadRowReason.EmptyCompletion, "texts[0].assistant has no text"),
    ];

    [Fact]
    public async Task Every_bad_row_is_skipped_counted_and_named()
    {
        using var dir = new TempDirectory();
        string path = dir.Path("bad.parquet");
        Write(path, ConversationColumns, BadRows.SelectMany(bad => new[] { Good, bad.Row }).Append(Good));
        ParquetSplit split = await ParquetSplit.OpenAsync(path);

        (List<ConversationRow> rows, List<BadRow> warnings, DatasetSummary summary) =
            await ReadSkippingAsync((policy, sum) => ConversationDataset.ReadAsync(split, policy, sum));

        Assert.Equal(Enumerable.Range(0, BadRows.Length + 1).Select(k => 2L * k), rows.Select(row => row.Location.Row));
        Assert.All(rows, row => SampleRows.AssertSame(SampleRows.Conversation(1), row));
        Assert.Equal(BadRows.Select((bad, k) => new BadRow(new RowLocation(path, 2 * k + 1), bad.Reason, bad.Detail)), warnings);
        Assert.Equal("19 rows read, 10 kept, 9 skipped (missing field: 5, invalid value: 1, empty completion: 1, missing image: 2)", summary.ToString());
    }

    [Fact]
    public async Task Under_strict_reading_a_bad_row_throws_naming_file_and_row()
    {
        using var dir = new TempDirectory();
        string path = dir.Path("bad.parquet");
        Write(path, ConversationColumns, [Good, Good, BadRows[^1].Row]);
        ParquetSplit split = await ParquetSplit.OpenAsync(path);

        var e = await Assert.ThrowsAsync<DatasetException>(() => ToListAsync(ConversationDataset.ReadAsync(split, BadRowPolicy.Strict, new DatasetSummary())));

        Assert.Equal($"{path}: row 2: texts[0].assistant has no text", e.Message);
        Assert.Equal(BadRowReason.EmptyCompletion, e.Reason);
    }
}
