using System.Text.Json;
using NativeVlm.Demo;
using NativeVlm.IO;
using Xunit;

namespace NativeVlm.Tests.Generation;

/// <summary>nativevlm generate as a user runs it: the real binary, its exit code, its output and its JSON Lines file.</summary>
public sealed class GenerateCliTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    private string ModelDir => _dir.Path("model");

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void Token_ids_in_give_transformers_generated_ids_out()
    {
        (int exitCode, string output, int[] ids) = GeneratePromptZero();

        Assert.True(exitCode == 0, output);
        Assert.Contains($"row 0: {string.Join(" ", ids)}{Environment.NewLine}", output);
        Assert.Contains($"{ids.Length} new tokens, stop max_new_tokens", output);
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void Sampling_flags_without_do_sample_are_named_in_a_warning_and_the_run_stays_greedy()
    {
        (int exitCode, string output, int[] ids) = GeneratePromptZero("--top_p", "0.5", "--temperature", "3");

        Assert.True(exitCode == 0, output);
        Assert.Contains("generate: warning: --temperature, --top_p only apply with --do_sample true; this run is greedy", output);
        Assert.Contains($"row 0: {string.Join(" ", ids)}{Environment.NewLine}", output);
    }

    /// <summary>
    /// generate on the generate-greedy fixture's prompt 0 for as many tokens as transformers generated, with
    /// its never-produced eos, and <paramref name="flags"/>; returns the run and transformers' ids.
    /// </summary>
    private static (int ExitCode, string Output, int[] Ids) GeneratePromptZero(params string[] flags)
    {
        var fixture = new GenerateFixture("generate-greedy");
        using SafeTensorsReader expected = SafeTensorsReader.Open(fixture.OutputsPath);
        int[] ids = expected.ReadInt32("single.0.generated_ids");
        (int exitCode, string output) = CliTests.RunHost(["generate", "--model", fixture.ModelDir, "--inputs", fixture.InputsPath,
            "--case", "prompt.0", "--max_new_tokens", ids.Length.ToString(), "--eos_token_id", fixture.NeverProducedEos.ToString(), .. flags]);
        return (exitCode, output, ids);
    }

    [Fact]
    public void An_image_and_a_prompt_stream_text_and_write_one_json_line()
    {
        DemoSnapshot.Create(ModelDir, seed: 0);
        string image = WriteImage("shape.png");
        string log = _dir.Path("out.jsonl");

        (int exitCode, string output) = CliTests.RunHost("generate", "--model", ModelDir, "--image", image,
            "--prompt", "What colour is the shape?", "--max_new_tokens", "5", "--output", log);

        Assert.True(exitCode == 0, output);
        Assert.Matches(@"generate: \d+ prompt tokens, \d new tokens, stop (eos|max_new_tokens), prefill [\d.]+ ms", output);
        string[] lines = File.ReadAllLines(log);
        Assert.Single(lines);
        using JsonDocument record = JsonDocument.Parse(lines[0]);
        JsonElement root = record.RootElement;
        Assert.Equal("--prompt", root.GetProperty("source").GetString());
        Assert.EndsWith("User:<image>What colour is the shape?<end_of_utterance>\nAssistant:", root.GetProperty("prompt").GetString());
        int newTokens = root.GetProperty("new_tokens").GetInt32();
        Assert.InRange(newTokens, 1, 5);
        Assert.Equal(newTokens, root.GetProperty("token_ids").GetArrayLength());
        Assert.True(root.GetProperty("prompt_tokens").GetInt32() > 16, "the prompt holds at least one frame's 16 image tokens");
        Assert.Equal(newTokens == 5 ? "max_new_tokens" : "eos", root.GetProperty("stop_reason").GetString());
        Assert.Equal(JsonValueKind.String, root.GetProperty("output").ValueKind);
        Assert.True(root.GetProperty("prefill_ms").GetDouble() > 0);
    }

    [Fact]
    public void A_json_samples_list_generates_every_entry()
    {
        DemoSnapshot.Create(ModelDir, seed: 0);
        WriteImage("a.png");
        string samples = _dir.Path("samples.json");
        File.WriteAllText(samples, """[{"images": ["a.png"], "prompt": "Colour?"}, {"prompt": "Hello"}]""");
        string log = _dir.Path("out.jsonl");

        (int exitCode, string output) = CliTests.RunHost("generate", "--model", ModelDir, "--samples", samples,
            "--max_new_tokens", "3", "--do_sample", "--seed", "5", "--output", log);

        Assert.True(exitCode == 0, output);
        Assert.Contains("generate: 2 samples generated, 0 rows skipped", output);
        string[] lines = File.ReadAllLines(log);
        Assert.Equal(2, lines.Length);
        using JsonDocument second = JsonDocument.Parse(lines[1]);
        Assert.Equal($"{samples}: row 1", second.RootElement.GetProperty("source").GetString());
    }

    [Fact]
    public async Task A_preference_parquet_split_generates_from_each_prompt_with_the_chosen_answer_as_reference()
    {
        DemoSnapshot.Create(ModelDir, seed: 0);
        string data = _dir.Path("data");
        await DemoDataset.CreateAsync(data, trainPairs: 2, testPairs: 2, seed: 0);
        string log = _dir.Path("out.jsonl");

        (int exitCode, string output) = CliTests.RunHost("generate", "--model", ModelDir, "--samples", data, "--split", "test",
            "--max_new_tokens", "2", "--output", log);

        Assert.True(exitCode == 0, output);
        string[] lines = File.ReadAllLines(log);
        Assert.Equal(2, lines.Length);
        foreach (string line in lines)
        {
            using JsonDocument record = JsonDocument.Parse(line);
            Assert.Contains("What colour is the shape?", record.RootElement.GetProperty("prompt").GetString());
            Assert.False(string.IsNullOrEmpty(record.RootElement.GetProperty("reference").GetString()));
            Assert.Contains(": row ", record.RootElement.GetProperty("source").GetString());
        }
    }

    [Fact]
    public void A_missing_image_file_exits_two_naming_it()
    {
        DemoSnapshot.Create(ModelDir, seed: 0);
        string missing = _dir.Path("no-such.png");

        (int exitCode, string output) = CliTests.RunHost("generate", "--model", ModelDir, "--image", missing, "--prompt", "Hi");

        Assert.Equal(2, exitCode);
        Assert.Single(output.Trim().Split('\n'));
        Assert.Contains(missing, output);
    }

    [Fact]
    public void Both_inputs_and_a_prompt_exit_two_naming_both()
    {
        (int exitCode, string output) = CliTests.RunHost("generate", "--model", _dir.Root, "--inputs", "x.safetensors", "--prompt", "Hi");

        Assert.Equal(2, exitCode);
        Assert.Single(output.Trim().Split('\n'));
        Assert.Contains("--prompt and --inputs were both given", output);
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void An_unknown_case_exits_two_listing_the_cases()
    {
        var fixture = new GenerateFixture("generate-greedy");

        (int exitCode, string output) = CliTests.RunHost("generate", "--model", fixture.ModelDir, "--inputs", fixture.InputsPath, "--case", "nope");

        Assert.Equal(2, exitCode);
        Assert.Single(output.Trim().Split('\n'));
        Assert.Contains("no case 'nope'", output);
        Assert.Contains("prompt.0", output);
    }

    [Fact]
    public void Help_exits_zero_and_lists_the_decoding_flags()
    {
        (int exitCode, string output) = CliTests.RunHost("generate", "--help");

        Assert.Equal(0, exitCode);
        foreach (string flag in new[] { "--max_new_tokens", "--do_sample", "--temperature", "--top_k", "--top_p", "--seed", "--output" })
        {
            Assert.Contains(flag, output);
        }
    }

    private string WriteImage(string name)
    {
        string path = _dir.Path(name);
        File.WriteAllBytes(path, PngEncoder.EncodeRgb(ShapePicture.Random(new Random(1)).Draw()));
        return path;
    }

    public void Dispose() => _dir.Dispose();
}
