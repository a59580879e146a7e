using NativeVlm.Stitching;
using Xunit;

namespace NativeVlm.Tests.Stitching;

/// <summary>The stitch verb through the real binary (<see cref="CliTests.RunHost"/>): its report, compare on its output, and its errors.</summary>
[Trait("Category", Fixtures.Category)]
public sealed class StitchCliTests : IDisposable
{
    private readonly StitchSources _sources = new();

    private string Output => _sources.Path("stitched");

    [Fact]
    public void Stitch_reports_what_it_did_and_compare_passes_on_its_output_with_transformers_connector()
    {
        (int exitCode, string log) = CliTests.RunHost("stitch", "--vision", _sources.Vision, "--text", _sources.Text, "--output_dir", Output);

        Assert.True(exitCode == 0, log);
        var counts = _sources.Recipe["tensors"]!["counts"]!;
        Assert.Contains($"vision tower: {(int)counts["copied_from_smolvlm2"]!} tensors copied", log);
        Assert.Contains($"decoder:      {(int)counts["copied_from_qwen3"]!} tensors copied", log);
        Assert.Contains($"connector:    {StitchedSnapshotCheck.ConnectorName} [{string.Join(", ", _sources.Recipe["connector"]!["shape"]!.AsArray())}]", log);
        Assert.Contains($"image token {_sources.ImageToken} = {_sources.ImageTokenId}, eos {_sources.EosToken} = {_sources.EosTokenId}", log);
        Assert.Contains($"stitch: wrote {Output}", log);

        StitchSources.ReplaceTensor(Output, StitchedSnapshotCheck.ConnectorName, Fixtures.Path(StitchSources.Fixture, "stitched"));
        (exitCode, log) = CliTests.RunHost("compare", "--model", Output,
            "--inputs", Fixtures.Path(StitchSources.Fixture, "inputs.safetensors"),
            "--expected", Fixtures.Path(StitchSources.Fixture, "outputs.safetensors"));
        Assert.True(exitCode == 0, log);
        Assert.Matches(@"compare: [1-9]\d* passed, 0 failed", log);
    }

    [Fact]
    public void Bad_sources_and_a_non_empty_output_exit_two_with_one_line_naming_the_file()
    {
        string missing = _sources.Path("no-such-folder");
        AssertUsageError(missing, ["stitch", "--vision", missing, "--text", _sources.Text, "--output_dir", Output]);

        string visionConfig = Path.Combine(_sources.Text, "config.json");
        AssertUsageError(visionConfig, ["stitch", "--vision", _sources.Text, "--text", _sources.Text, "--output_dir", Output]);

        Directory.CreateDirectory(Output);
        File.WriteAllText(Path.Combine(Output, "keep.txt"), "");
        AssertUsageError(Output, ["stitch", "--vision", _sources.Vision, "--text", _sources.Text, "--output_dir", Output]);

        string tokenizer = Path.Combine(_sources.Text, "tokenizer.json");
        File.WriteAllText(tokenizer, File.ReadAllText(tokenizer).Replace(ModelStitcher.ImagePadToken, "<|not_image_pad|>"));
        AssertUsageError(tokenizer, ["stitch", "--vision", _sources.Vision, "--text", _sources.Text, "--output_dir", _sources.Path("other")]);
    }

    [Fact]
    public void Help_exits_zero_and_states_the_seed_default()
    {
        (int exitCode, string log) = CliTests.RunHost("stitch", "--help");

        Assert.Equal(0, exitCode);
        Assert.Contains("--seed", log);
        Assert.Contains("Default 0", log);
    }

    private static void AssertUsageError(string named, string[] args)
    {
        (int exitCode, string log) = CliTests.RunHost(args);

        Assert.True(exitCode == 2, log);
        Assert.Single(log.Trim().Split('\n'));
        Assert.Contains(named, log);
    }

    public void Dispose() => _sources.Dispose();
}
