using System.Text;
using NativeVlm.Data;
using Xunit;
using static NativeVlm.Tests.Data.DatasetTestReads;

namespace NativeVlm.Tests.Data;

/// <summary>The image/caption JSON list: paths relative to the JSON file, bad entries skipped and named, or thrown under strict reading.</summary>
public class CaptionListDatasetTests
{
    private static byte[] ImageBytes(string name) => [0x89, 0x50, .. Encoding.UTF8.GetBytes(name)];

    private static string WriteImage(TempDirectory dir, string relativePath)
    {
        string path = dir.Path(relativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, ImageBytes(relativePath));
        return path;
    }

    [Fact]
    public async Task Entries_read_back_with_their_images_bytes_and_paths_relative_to_the_json_file()
    {
        using var dir = new TempDirectory();
        string first = WriteImage(dir, "set/images/a.png");
        string second = WriteImage(dir, "set/b c.jpg");
        string third = WriteImage(dir, "elsewhere/d.webp");
        string json = dir.Path("set/captions.json");
        File.WriteAllText(json, $$"""
            [
              {"image": "images/a.png", "caption": "A red square."},
              {"caption": "Two words é𠮷", "image": "b c.jpg", "width": 640},
              {"image": "../elsewhere/d.webp", "caption": "relative, up a folder"},
              {"image": {{System.Text.Json.JsonSerializer.Serialize(third)}}, "caption": "absolute"}
            ]
            """);

        var summary = new DatasetSummary();
        List<CaptionedRow> rows = await ToListAsync(CaptionListDataset.ReadAsync(json, BadRowPolicy.Strict, summary));

        Assert.Equal(4, rows.Count);
        (string Path, string Name, string Caption)[] expected =
        [
            (first, "set/images/a.png", "A red square."),
            (second, "set/b c.jpg", "Two words é𠮷"),
            (third, "elsewhere/d.webp", "relative, up a folder"),
            (third, "elsewhere/d.webp", "absolute"),
        ];
        for (int i = 0; i < rows.Count; i++)
        {
            Assert.Equal(new RowLocation(json, i), rows[i].Location);
            Assert.Equal(expected[i].Path, rows[i].Image.Path);
            Assert.Equal(ImageBytes(expected[i].Name), rows[i].Image.Bytes);
            Assert.Equal(expected[i].Caption, rows[i].Caption);
        }
        Assert.Equal("4 rows read, 4 kept, 0 skipped", summary.ToString());
    }

    private static readonly (string Entry, BadRowReason Reason, string Detail)[] BadEntries =
    [
        ("\"a.png\"", BadRowReason.WrongType, "the entry is a JSON String, not an object"),
        ("null", BadRowReason.WrongType, "the entry is a JSON Null, not an object"),
        ("{\"caption\": \"c\"}", BadRowReason.MissingField, "image is missing"),
        ("{\"image\": null, \"caption\": \"c\"}", BadRowReason.MissingField, "image is missing"),
        ("{\"image\": 7, \"caption\": \"c\"}", BadRowReason.WrongType, "image is a JSON Number, not a string"),
        ("{\"image\": \"\", \"caption\": \"c\"}", BadRowReason.InvalidValue, "image is an empty path"),
        ("{\"image\": \"a.png\"}", BadRowReason.MissingField, "caption is missing"),
        ("{\"image\": \"a.png\", \"caption\": [\"c\"]}", BadRowReason.WrongType, "caption is a JSON Array, not a string"),
        ("{\"image\": \"a.png\", \"caption\": \" \\t\"}", BadRowReason.EmptyCompletion, "caption has no text"),
    ];

    [Fact]
    public async Task Every_bad_entry_is_skipped_counted_and_named()
    {
        using var dir = new TempDirectory();
        WriteImage(dir, "a.png");
        File.WriteAllBytes(dir.Path("empty.png"), []);
        const string good = "{\"image\": \"a.png\", \"caption\": \"c\"}";
        (string Entry, BadRowReason Reason, string Detail)[] bad =
        [
            .. BadEntries,
            ("{\"image\": \"missing.png\", \"caption\": \"c\"}", BadRowReason.MissingImage, $"image {dir.Path("missing.png")} cannot be read ("),
            ("{\"image\": \"empty.png\", \"caption\": \"c\"}", BadRowReason.MissingImage, $"image {dir.Path("empty.png")} is empty"),
        ];
        string json = dir.Path("list.json");
        File.WriteAllText(json, $"[{string.Join(",\n", bad.SelectMany(entry => new[] { good, entry.Entry }).Append(good))}]");

        (List<CaptionedRow> rows, List<BadRow> warnings, DatasetSummary summary) =
            await ReadSkippingAsync((policy, sum) => CaptionListDataset.ReadAsync(json, policy, sum));

        Assert.Equal(Enumerable.Range(0, bad.Length + 1).Select(k => 2L * k), rows.Select(row => row.Location.Row));
        Assert.Equal(bad.Length, warnings.Count);
        for (int k = 0; k < bad.Length; k++)
        {
            Assert.Equal(new RowLocation(json, 2 * k + 1), warnings[k].Location);
            Assert.Equal(bad[k].Reason, warnings[k].Reason);
            Assert.StartsWith(bad[k].Detail, warnings[k].Detail);
        }
        Assert.Equal("23 rows read, 12 kept, 11 skipped (missing field: 3, wrong type: 4, invalid value: 1, empty completion: 1, missing image: 2)", summary.ToString());
    }

    [Fact]
    public async Task Under_strict_reading_a_bad_entry_throws_naming_file_and_row()
    {
        using var dir = new TempDirectory();
        WriteImage(dir, "a.png");
        string json = dir.Path("list.json");
        File.WriteAllText(json, """[{"image": "a.png", "caption": "c"}, {"image": "a.png", "caption": 3}]""");

        var e = await Assert.ThrowsAsync<DatasetException>(() => ToListAsync(CaptionListDataset.ReadAsync(json, BadRowPolicy.Strict, new DatasetSummary())));

        Assert.Equal($"{json}: row 1: caption is a JSON Number, not a string", e.Message);
        Assert.Equal(BadRowReason.WrongType, e.Reason);
    }

    [Theory]
    [InlineData("""{"image": "a.png", "caption": "c"}""")]
    [InlineData("""[{"image": "a.png", "caption": "c"}, {"image": """)]
    [InlineData("")]
    public async Task A_file_that_is_not_a_json_list_is_an_error_naming_it(string text)
    {
        using var dir = new TempDirectory();
        WriteImage(dir, "a.png");
        string json = dir.Path("list.json");
        File.WriteAllText(json, text);

        var e = await Assert.ThrowsAsync<DatasetException>(() => ToListAsync(CaptionListDataset.ReadAsync(json, BadRowPolicy.Strict, new DatasetSummary())));

        Assert.Equal(json, e.FilePath);
        Assert.Null(e.Row);
        Assert.StartsWith($"{json}: not a JSON list of {{\"image\", \"caption\"}} objects (", e.Message);
    }
}
