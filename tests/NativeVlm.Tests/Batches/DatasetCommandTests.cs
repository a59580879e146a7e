using NativeVlm.Data;
using NativeVlm.Tests.Data;
using Xunit;
using static NativeVlm.Tests.Batches.TinySnapshot;

namespace NativeVlm.Tests.Batches;

/// <summary>nativevlm dataset --dry_run on a small rlaif-v-layout parquet file, as a user runs it.</summary>
[Trait("Category", Fixtures.Category)]
public sealed class DatasetCommandTests : IDisposable
{
    private readonly TinySnapshot _snapshot = new();

    public void Dispose() => _snapshot.Dispose();

    /// <summary>
    /// Row 0: a 64×32 image (3 tiles), prompt 44 + rejected 13 = 57 tokens. Row 1: a 20×20 image
    /// (5 tiles), prompt 57 + 13 = 70. Row 2: image bytes that are no image. Row 3: a 40-character
    /// question makes the prompt 79 tokens, over --max_prompt_length 60 with the image at its start.
    /// </summary>
    private async Task<string> WritePairsAsync()
    {
        string path = _snapshot.Path("pairs.parquet");
        PreferenceRow[] rows =
        [
            DpoSampleTests.Pair("What?", [Image(64, 32)]),
            DpoSampleTests.Pair("What?", [Image(20, 20)]),
            DpoSampleTests.Pair("What?", [new DatasetImage([1, 2, 3], "x.png")]),
            DpoSampleTests.Pair(new string('x', 40), [Image(64, 32)]),
        ];
        await NetParquet.WritePreferenceAsync(path, rows, rowGroupSize: 2);
        return path;
    }

    [Fact]
    public async Task A_dry_run_prints_rows_read_kept_skipped_by_reason_tokens_and_tiles()
    {
        string data = await WritePairsAsync();

        (int exitCode, string output) = CliTests.RunHost("dataset", "--model", _snapshot.Folder, "--data", data, "--objective", "dpo",
            "--max_prompt_length", "60", "--dry_run");

        Assert.True(exitCode == 0, output);
        Assert.Contains("rows read: 4\n", output);
        Assert.Contains("rows kept: 2\n", output);
        Assert.Contains("rows skipped: 2\n  undecodable image: 1\n  prompt with its image tokens over max_prompt_length: 1\n", output);
        Assert.Contains("tokens per sample (prompt + longer completion): min 57, median 63.5, max 70\n", output);
        Assert.Contains("image tiles per sample: min 3, median 4, max 5\n", output);
        Assert.Contains($"warning: skipped {data}: row 2: images[0] (x.png): not a PNG, JPEG or WebP file (undecodable image)", output);
        Assert.Contains($"warning: skipped {data}: row 3: the prompt is 79 tokens (12 of them image tokens), max_prompt_length is 60", output);
    }

    [Fact]
    public async Task Under_strict_the_first_bad_row_exits_2_with_one_line_naming_file_and_row()
    {
        string data = await WritePairsAsync();

        (int exitCode, string output) = CliTests.RunHost("dataset", "--model", _snapshot.Folder, "--data", data, "--objective", "dpo",
            "--strict", "--dry_run");

        Assert.Equal(2, exitCode);
        Assert.EndsWith($"nativevlm: {data}: row 2: images[0] (x.png): not a PNG, JPEG or WebP file\n", output);
    }

    [Fact]
    public void Without_dry_run_the_verb_refuses_with_exit_2()
    {
        (int exitCode, string output) = CliTests.RunHost("dataset", "--model", _snapshot.Folder, "--data", "x.parquet", "--objective", "sft");

        Assert.Equal(2, exitCode);
        Assert.Equal("nativevlm: dataset needs --dry_run: it reads and counts, it does not train\n", output);
    }
}
