using NativeVlm.Data;
using Xunit;
using static NativeVlm.Tests.Data.DatasetTestReads;
using static NativeVlm.Tests.Data.DuckDbParquet;

namespace NativeVlm.Tests.Data;

/// <summary>
/// HuggingFaceH4/rlaif-v_formatted-shaped parquet, written by DuckDB and by Parquet.Net in Hugging
/// Face's layout, read back field by field; bad rows skipped and named, or thrown under strict reading.
/// </summary>
public class PreferenceDatasetTests
{
    [Fact]
    public async Task A_DuckDB_file_of_several_row_groups_reads_back_every_field()
    {
        using var dir = new TempDirectory();
        string path = dir.Path("train-00000-of-00001.parquet");
        const int rowCount = 5000;
        Write(path, PreferenceColumns, Enumerable.Range(0, rowCount).Select(i => PreferenceTuple(SampleRows.Pair(i))));
        // DuckDB cuts row groups of 2048 rows or more, where its threads end their batches.
        Assert.True(await RowGroupCountAsync(path) > 1);

        var summary = new DatasetSummary();
        ParquetSplit split = await ParquetSplit.OpenAsync(path);
        List<PreferenceRow> rows = await ToListAsync(PreferenceDataset.ReadAsync(split, BadRowPolicy.Strict, summary));

        Assert.Equal(rowCount, rows.Count);
        for (int i = 0; i < rowCount; i++)
        {
            Assert.Equal(new RowLocation(path, i), rows[i].Location);
            SampleRows.AssertSame(SampleRows.Pair(i), rows[i]);
        }
        Assert.Equal("5000 rows read, 5000 kept, 0 skipped", summary.ToString());
    }

    [Theory]
    [InlineData("element")]
    [InlineData("item")]
    public async Task A_Parquet_Net_file_in_Hugging_Face_layout_reads_back_every_field(string elementName)
    {
        using var dir = new TempDirectory();
        string path = dir.Path("rlaif.parquet");
        await NetParquet.WritePreferenceAsync(path, Enumerable.Range(0, 11).Select(SampleRows.Pair), rowGroupSize: 3, elementName);
        Assert.Equal(4, await RowGroupCountAsync(path));

        ParquetSplit split = await ParquetSplit.OpenAsync(path);
        List<PreferenceRow> rows = await ToListAsync(PreferenceDataset.ReadAsync(split, BadRowPolicy.Strict, new DatasetSummary()));

        Assert.Equal(11, rows.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            Assert.Equal(new RowLocation(path, i), rows[i].Location);
            SampleRows.AssertSame(SampleRows.Pair(i), rows[i]);
        }
    }

    private static readonly string Good = PreferenceTuple(SampleRows.Pair(1));
    private const string OneImage = "[{'bytes': '\\x01'::BLOB, 'path': NULL}]";
    private const string Answer = "[{'content': [{'text': 'yes', 'type': 'text'}], 'role': 'assistant'}]";

    private static string Row(string prompt, string images = OneImage, string chosen = Answer, string rejected = Answer) =>
        $"({chosen}, {rejected}, {images}, {prompt})";

    private static string Prompt(string content, string role = "'user'") =>
        $"[{{'content': [{content}], 'role': {role}}}]";

    private const string ImageItem = "{'text': NULL, 'type': 'image'}";
    private const string Question = "{'text': 'q', 'type': 'text'}";

    /// <summary>Each bad row kind, with the reason and the detail its warning must carry.</summary>
    private static readonly (string Row, BadRowReason Reason, string Detail)[] BadRows =
    [
        (Row(prompt: "NULL"), BadRowReason.MissingField, "prompt is null"),
        (Row(prompt: "[NULL]"), BadRowReason.MissingField, "prompt[0] is null"),
        (Row(Prompt($"{ImageItem}, {Question}", role: "NULL")), BadRowReason.MissingField, "prompt[0].role is null"),
        (Row("[{'content': NULL, 'role': 'user'}]"), BadRowReason.MissingField, "prompt[0].content is null"),
        (Row(Prompt($"{ImageItem}, NULL")), BadRowReason.MissingField, "prompt[0].content[1] is null"),
        (Row(Prompt($"{ImageItem}, {{'text': NULL, 'type': 'text'}}")), BadRowReason.MissingField, "prompt[0].content[1].text is null"),
        (Row(Prompt($"{ImageItem}, {{'text': 'q', 'type': NULL}}")), BadRowReason.MissingField, "prompt[0].content[1].type is null"),
        (Row(Prompt($"{{'text': NULL, 'type': 'video'}}, {Question}")), BadRowReason.InvalidValue, "prompt[0].content[0].type is 'video', neither 'text' nor 'image'"),
        (Row(Prompt($"{ImageItem}, {Question}", role: "''")), BadRowReason.InvalidValue, "prompt[0].role is empty"),
        (Row(prompt: "[]", images: "[]"), BadRowReason.InvalidValue, "prompt has no message"),
        (Row(Prompt($"{ImageItem}, {Question}"), chosen: "[]"), BadRowReason.EmptyCompletion, "chosen has no message"),
        (Row(Prompt($"{ImageItem}, {Question}"), rejected: "[{'content': [{'text': ' \n', 'type': 'text'}], 'role': 'assistant'}]"),
            BadRowReason.EmptyCompletion, "rejected has no text"),
        (Row(Prompt($"{ImageItem}, {Question}"), chosen: "NULL"), BadRowReason.MissingField, "chosen is null"),
        (Row(Prompt($"{ImageItem}, {Question}"), images: "NULL"), BadRowReason.MissingField, "images is null"),
        (Row(Prompt($"{ImageItem}, {Question}"), images: "[NULL]"), BadRowReason.MissingImage, "images[0] is null"),
        (Row(Prompt($"{ImageItem}, {Question}"), images: "[{'bytes': NULL, 'path': 'a.png'}]"), BadRowReason.MissingImage,
            "images[0] has no bytes (only a path, 'a.png')"),
        (Row(Prompt($"{ImageItem}, {Question}"), images: "[{'bytes': ''::BLOB, 'path': NULL}]"), BadRowReason.MissingImage, "images[0] has no bytes"),
        (Row(Prompt($"{ImageItem}, {Question}"), images: $"[{{'bytes': '\\x01'::BLOB, 'path': NULL}}, {{'bytes': '\\x02'::BLOB, 'path': NULL}}]"),
            BadRowReason.ImageCountMismatch, "prompt has 1 image items, images has 2 images"),
        (Row(Prompt(Question)), BadRowReason.ImageCountMismatch, "prompt has 0 image items, images has 1 images"),
        (Row(Prompt($"{ImageItem}, {Question}"), chosen: $"[{{'content': [{ImageItem}, {{'text': 'a', 'type': 'text'}}], 'role': 'assistant'}}]"),
            BadRowReason.ImageCountMismatch, "chosen has 1 image items; a completion is text only"),
    ];

    /// <summary>Good, bad, good, bad, ..., good: bad row k is file row 2k + 1.</summary>
    private static string WriteBadRowsFile(TempDirectory dir)
    {
        string path = dir.Path("bad.parquet");
        Write(path, PreferenceColumns, BadRows.SelectMany(bad => new[] { Good, bad.Row }).Append(Good));
        return path;
    }

    [Fact]
    public async Task Every_bad_row_is_skipped_counted_and_named()
    {
        using var dir = new TempDirectory();
        string path = WriteBadRowsFile(dir);
        ParquetSplit split = await ParquetSplit.OpenAsync(path);

        (List<PreferenceRow> rows, List<BadRow> warnings, DatasetSummary summary) =
            await ReadSkippingAsync((policy, sum) => PreferenceDataset.ReadAsync(split, policy, sum));

        Assert.Equal(Enumerable.Range(0, BadRows.Length + 1).Select(k => 2L * k), rows.Select(row => row.Location.Row));
        Assert.All(rows, row => SampleRows.AssertSame(SampleRows.Pair(1), row));
        Assert.Equal(
            BadRows.Select((bad, k) => new BadRow(new RowLocation(path, 2 * k + 1), bad.Reason, bad.Detail)),
            warnings);
        Assert.Equal($"{path}: row 3: prompt[0] is null", warnings[1].ToString());
        Assert.Equal(2 * BadRows.Length + 1, summary.RowsRead);
        Assert.Equal(BadRows.Length, summary.RowsSkipped);
        Assert.Equal(BadRows.Length + 1, summary.RowsKept);
        Assert.Equal(
            BadRows.GroupBy(bad => bad.Reason).ToDictionary(group => group.Key, group => (long)group.Count()),
            summary.SkippedByReason);
        Assert.Equal(
            "41 rows read, 21 kept, 20 skipped (missing field: 9, invalid value: 3, empty completion: 2, missing image: 3, image count mismatch: 3)",
            summary.ToString());
    }

    [Fact]
    public async Task Under_strict_reading_the_first_bad_row_throws_naming_file_and_row()
    {
        using var dir = new TempDirectory();
        string path = WriteBadRowsFile(dir);
        ParquetSplit split = await ParquetSplit.OpenAsync(path);
        var summary = new DatasetSummary();
        var kept = new List<PreferenceRow>();

        var e = await Assert.ThrowsAsync<DatasetException>(async () =>
        {
            await foreach (PreferenceRow row in PreferenceDataset.ReadAsync(split, BadRowPolicy.Strict, summary))
            {
                kept.Add(row);
            }
        });

        Assert.Equal(path, e.FilePath);
        Assert.Equal(1, e.Row);
        Assert.Equal(BadRowReason.MissingField, e.Reason);
        Assert.Equal($"{path}: row 1: prompt is null", e.Message);
        Assert.Single(kept);
        Assert.Equal(2, summary.RowsRead);
    }

    [Theory]
    [InlineData($"chosen {MessagesType}, images {ImagesType}, prompt {MessagesType}", "(NULL, NULL, NULL)",
        "column 'rejected' is missing (the file has chosen, images, prompt)")]
    [InlineData($"chosen {MessagesType}, rejected {MessagesType}, images VARCHAR[], prompt {MessagesType}", "(NULL, NULL, NULL, NULL)",
        "column 'images[]' is string, expected struct<bytes: binary, path: string>")]
    [InlineData($"chosen {MessagesType}, rejected {MessagesType}, images {ImagesType}, prompt STRUCT(content STRUCT(text VARCHAR, type VARCHAR)[], role INTEGER)[]",
        "(NULL, NULL, NULL, NULL)", "column 'prompt[].role' is INT32, expected string")]
    [InlineData($"chosen {MessagesType}, rejected {MessagesType}, images {ImagesType}, prompt STRUCT(content STRUCT(text VARCHAR)[], role VARCHAR)[]",
        "(NULL, NULL, NULL, NULL)", "column 'prompt[].content[].type' is missing")]
    [InlineData($"chosen {MessagesType}, rejected {MessagesType}, images STRUCT(bytes VARCHAR, path VARCHAR)[], prompt {MessagesType}",
        "(NULL, NULL, NULL, NULL)", "column 'images[].bytes' is string, expected binary")]
    [InlineData($"chosen VARCHAR, rejected {MessagesType}, images {ImagesType}, prompt {MessagesType}", "(NULL, NULL, NULL, NULL)",
        "column 'chosen' is string, expected list<struct<content: list<struct<text: string, type: string>>, role: string>>")]
    public async Task A_file_of_another_layout_is_an_error_naming_file_and_column(string columns, string nullRow, string detail)
    {
        using var dir = new TempDirectory();
        string path = dir.Path("other.parquet");
        Write(path, columns, [nullRow]);
        ParquetSplit split = await ParquetSplit.OpenAsync(path);

        var e = await Assert.ThrowsAsync<DatasetException>(() => ToListAsync(PreferenceDataset.ReadAsync(split, BadRowPolicy.Strict, new DatasetSummary())));

        Assert.Equal(path, e.FilePath);
        Assert.Null(e.Row);
        Assert.Equal($"{path}: {detail}", e.Message);
    }
}
