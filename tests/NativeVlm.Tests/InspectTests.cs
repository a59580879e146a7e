using System.Globalization;
using System.Text.Json.Nodes;
using NativeVlm.Demo;
using NativeVlm.IO;
using NativeVlm.Vision;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// nativevlm inspect through the real binary: PEFT's counts for the real SmolVLM configs, the checks of a
/// snapshot and of broken copies of it (exit 1), the image path check passing on a stitched model and
/// failing on a stale image_token_id, and bad flags (exit 2).
/// </summary>
public class InspectTests
{
    /// <summary>Every model × adapter of param-counts.json, as (model, adapter) names.</summary>
    public static TheoryData<string, string> ParamCountCases()
    {
        JsonNode counts = ParamCounts();
        var cases = new TheoryData<string, string>();
        foreach ((string model, JsonNode? entry) in counts["models"]!.AsObject())
        {
            foreach ((string adapter, _) in entry!["counts"]!.AsObject())
            {
                cases.Add(model, adapter);
            }
        }
        return cases;
    }

    [Theory]
    [Trait("Category", Fixtures.Category)]
    [MemberData(nameof(ParamCountCases))]
    public void Prints_PEFTs_counts_for_the_real_configs_from_config_json_alone(string model, string adapter)
    {
        JsonNode counts = ParamCounts();
        JsonNode expected = counts["models"]![model]!["counts"]![adapter]!;
        using var dir = new TempDirectory();
        string configPath = dir.Path("config.json");
        string adapterPath = dir.Path("adapter_config.json");
        File.WriteAllText(configPath, counts["models"]![model]!["config"]!.ToJsonString());
        File.WriteAllText(adapterPath, counts["adapters"]![adapter]!.ToJsonString());

        (int exitCode, string output) = CliTests.RunHost("inspect", "--config", configPath, "--adapter_config", adapterPath);

        // The reconstructed configs keep transformers' default image_token_id (128257), outside their vocabularies:
        // inspect must call that an error (exit 1) while still printing every count.
        JsonNode config = counts["models"]![model]!["config"]!;
        bool imageTokenInVocabulary = config["image_token_id"]!.GetValue<int>() < config["text_config"]!["vocab_size"]!.GetValue<int>();
        Assert.True(exitCode == (imageTokenInVocabulary ? 0 : 1), output);
        Assert.Equal(!imageTokenInVocabulary, output.Contains("error   config.json image_token_id: ", StringComparison.Ordinal));
        Assert.Contains(expected["printed"]!.GetValue<string>() + Environment.NewLine, output);
        JsonNode breakdown = expected["breakdown"]!;
        AssertCount(output, "vision tower", breakdown["vision"]!);
        AssertCount(output, "connector", breakdown["connector"]!);
        AssertCount(output, "token embeddings", breakdown["text.embed_tokens"]!);
        AssertCount(output, "text decoder", breakdown["text"]!);
        AssertCount(output, "LM head", breakdown["lm_head"]!);
        AssertCount(output, "total", expected["base_params"]!);
        JsonNode modules = expected["adapted_modules"]!;
        Assert.Contains($"adapted modules: {modules["total"]} (vision {modules["vision"]}, connector 0, text {modules["text"]})", output);
        long trainable = expected["trainable_params"]!.GetValue<long>();
        Assert.Contains($"training the adapter ({trainable.ToString("N0", CultureInfo.InvariantCulture)} parameters, all f32)", output);
        Assert.Contains("activations are not counted", output);
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void Inspects_a_snapshot_and_checks_its_weights_against_the_config()
    {
        (int exitCode, string output) = CliTests.RunHost("inspect", "--model", Fixtures.Path("tiny-idefics3"),
            "--lora_target_modules", "q_proj,v_proj", "--lora_r", "4", "--use_dora");

        Assert.True(exitCode == 0, output);
        Assert.Contains("every one as config.json implies", output);
        Assert.Contains("adapter: DoRA r=4 alpha=8 on q_proj, v_proj", output);
        Assert.Matches(@"trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}", output);
        Assert.Matches(@"(?m)^  nf4 \+ f32 +\d+\.\d\d MiB", output);
        Assert.Contains("findings: none", output);
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void A_config_alone_prints_its_own_checks_and_no_snapshot_sections()
    {
        (int exitCode, string output) = CliTests.RunHost("inspect", "--config", Fixtures.Path("tiny-qwen3-smvl", "config.json"));

        Assert.True(exitCode == 0, output);
        Assert.Matches(@"(?m)^  ok      config.json image_token_id: ", output);
        Assert.DoesNotContain("tokens per image", output);
        Assert.DoesNotContain("model.safetensors", output);
        Assert.Contains("findings: none", output);
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void A_copy_with_a_stale_nested_image_token_id_and_a_wrong_vocab_size_exits_one_naming_both()
    {
        using var dir = new TempDirectory();
        string snapshot = CopySnapshot("tiny-idefics3", dir.Path("broken"));
        JsonNode config = JsonNode.Parse(File.ReadAllText(Path.Combine(snapshot, "config.json")))!;
        int imageTokenId = config["image_token_id"]!.GetValue<int>();
        int vocabSize = config["text_config"]!["vocab_size"]!.GetValue<int>();
        config["text_config"]!["image_token_id"] = imageTokenId - 1;
        config["text_config"]!["vocab_size"] = vocabSize + 1;
        File.WriteAllText(Path.Combine(snapshot, "config.json"), config.ToJsonString());

        (int exitCode, string output) = CliTests.RunHost("inspect", "--model", snapshot);

        Assert.True(exitCode == 1, output);
        Assert.Contains($"error   config.json text_config.image_token_id: {imageTokenId - 1}, but the top-level image_token_id is {imageTokenId}: a stale copy", output);
        Assert.Contains($"error   model.safetensors: shapes that disagree with config.json", output);
        Assert.Contains($"is [{vocabSize}, ", output);
        Assert.Matches(@"findings: [1-9]\d* errors?, ", output);
    }

    [Fact]
    public void A_snapshot_with_tokenizer_counts_tokens_per_image_and_passes_the_image_path_check()
    {
        using var dir = new TempDirectory();
        DemoSnapshot.Create(dir.Root, seed: 0);

        (int exitCode, string output) = CliTests.RunHost("inspect", "--model", dir.Root, "--image_size", "640x480", "--check_image_path", "true");

        Assert.True(exitCode == 0, output);
        Assert.Matches(@"(?m)^  640x480: global image only = 1 frames?, \d+ image tokens, expansion \d+ tokens, user prompt ""Describe this image."" \d+ tokens\r?$", output);
        Assert.Contains($"ok      config.json image_token_id: {DemoSnapshot.TokenId(Idefics3Prompt.ImageToken)} is the tokenizer's id of <image>", output);
        Assert.Contains("ok      chat template: ", output);
        Assert.Contains("largest logit change before the first image token: 0 (must be 0)", output);
        Assert.Contains("image path: ok, images reach the decoder", output);
    }

    [Fact]
    public void A_stale_image_token_id_fails_both_the_findings_and_the_image_path_check()
    {
        using var dir = new TempDirectory();
        DemoSnapshot.Create(dir.Root, seed: 0);
        // The padding token: a valid id that a one-turn prompt never holds.
        int staleId = DemoSnapshot.TokenId(DemoSnapshot.Pad);
        JsonNode config = JsonNode.Parse(File.ReadAllText(dir.Path("config.json")))!;
        config["image_token_id"] = staleId;
        File.WriteAllText(dir.Path("config.json"), config.ToJsonString());

        (int exitCode, string output) = CliTests.RunHost("inspect", "--model", dir.Root, "--check_image_path", "true");

        Assert.True(exitCode == 1, output);
        Assert.Contains($"error   config.json image_token_id: {staleId}, but the tokenizer gives <image> the id {DemoSnapshot.TokenId(Idefics3Prompt.ImageToken)}", output);
        Assert.Contains($"image path: FAIL, no token of the prompt is config.json's image_token_id {staleId}", output);
    }

    [Fact]
    public void An_end_of_sequence_id_the_tokenizer_lacks_in_generation_config_is_an_error()
    {
        using var dir = new TempDirectory();
        DemoSnapshot.Create(dir.Root, seed: 0);
        int eos = DemoSnapshot.TokenId(DemoSnapshot.EndOfUtterance), pastVocabulary = DemoSnapshot.VocabSize;
        File.WriteAllText(dir.Path("generation_config.json"), new JsonObject { ["eos_token_id"] = new JsonArray(eos, pastVocabulary) }.ToJsonString());

        (int exitCode, string output) = CliTests.RunHost("inspect", "--model", dir.Root);

        Assert.True(exitCode == 1, output);
        Assert.Contains($"error   generation_config.json eos_token_id: {pastVocabulary} not a token of the tokenizer", output);
        Assert.Contains($"ok      config.json text_config.eos_token_id: {eos} ({DemoSnapshot.EndOfUtterance})", output);
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void The_image_path_check_passes_on_the_stitched_model_with_the_prompt_of_an_inputs_file()
    {
        (int exitCode, string output) = CliTests.RunHost("inspect", "--model", Fixtures.Path("tiny-qwen3-smvl"), "--check_image_path", "true",
            "--inputs", Fixtures.Path("tiny-qwen3-smvl", "inputs.safetensors"));

        Assert.True(exitCode == 0, output);
        Assert.Contains("largest logit change before the first image token: 0 (must be 0)", output);
        Assert.Matches(@"largest logit change from the first image token on: [0-9.eE+-]+ \(must be > 0\)", output);
        Assert.Matches(@"connector gradient norm of the LM loss: [0-9.eE+-]+ \(must be finite and > 0\)", output);
        Assert.Contains("image path: ok, images reach the decoder", output);
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void The_image_path_check_fails_with_exit_one_on_a_stitched_copy_whose_image_token_id_is_stale()
    {
        using var dir = new TempDirectory();
        string snapshot = CopySnapshot("tiny-qwen3-smvl", dir.Path("stale"));
        string inputs = Fixtures.Path("tiny-qwen3-smvl", "inputs.safetensors");
        int staleId = IdAbsentFrom(inputs);
        JsonNode config = JsonNode.Parse(File.ReadAllText(Path.Combine(snapshot, "config.json")))!;
        config["image_token_id"] = staleId;
        File.WriteAllText(Path.Combine(snapshot, "config.json"), config.ToJsonString());

        (int exitCode, string output) = CliTests.RunHost("inspect", "--model", snapshot, "--check_image_path", "true", "--inputs", inputs);

        Assert.True(exitCode == 1, output);
        Assert.Contains($"error   inputs.safetensors input_ids: sample 0 holds 0 tokens of config.json's image_token_id {staleId}", output);
        Assert.Contains($"image path: FAIL, no token of the prompt is config.json's image_token_id {staleId}", output);
    }

    [Theory]
    [InlineData("--image_size", "640", "--image_size 640: expected WIDTHxHEIGHT")]
    [InlineData("--device", "tpu", "--device tpu: expected cpu, cuda or cuda:N")]
    [InlineData("--lora_r", "0", "--lora_r 0: the rank must be a positive integer")]
    [InlineData("--check_image_path", "true", "--check_image_path: ")]
    [Trait("Category", Fixtures.Category)]
    public void A_bad_flag_value_exits_two_with_a_one_line_reason(string flag, string value, string reason)
    {
        string[] adapter = flag == "--lora_r" ? ["--lora_target_modules", "q_proj"] : [];
        (int exitCode, string output) = CliTests.RunHost(["inspect", "--model", Fixtures.Path("tiny-idefics3"), flag, value, .. adapter]);

        Assert.Equal(2, exitCode);
        Assert.Single(output.Trim().Split('\n'));
        Assert.Contains(reason, output);
    }

    [Fact]
    public void Help_exits_zero_and_lists_the_flags()
    {
        (int exitCode, string output) = CliTests.RunHost("inspect", "--help");

        Assert.Equal(0, exitCode);
        foreach (string flag in new[] { "--adapter_config", "--lora_r", "--lora_alpha", "--lora_target_modules", "--use_dora", "--image_size", "--check_image_path", "--device" })
        {
            Assert.Contains(flag, output);
        }
    }

    [Fact]
    public void A_missing_model_folder_exits_two_naming_it()
    {
        (int exitCode, string output) = CliTests.RunHost("inspect", "--model", "/nonexistent/snapshot");

        Assert.Equal(2, exitCode);
        Assert.Contains("/nonexistent/snapshot", output);
    }

    private static JsonNode ParamCounts() =>
        JsonNode.Parse(File.ReadAllText(Fixtures.Path("param-counts", "param-counts.json")))!;

    /// <summary>A "  name   1,234" row of the parameters table (or "tied" for an LM head whose count is 0 in the file).</summary>
    private static void AssertCount(string output, string component, JsonNode count)
    {
        long value = count.GetValue<long>();
        string pattern = value == 0 && component == "LM head"
            ? $@"(?m)^  {component} +tied to the token embeddings\r?$"
            : $@"(?m)^  {component} +{value.ToString("N0", CultureInfo.InvariantCulture)}\r?$";
        Assert.Matches(pattern, output);
    }

    /// <summary>A fixture snapshot's config.json and safetensors copied to <paramref name="destination"/>, to break.</summary>
    internal static string CopySnapshot(string fixture, string destination)
    {
        Directory.CreateDirectory(destination);
        foreach (string name in new[] { "config.json", SafeTensorsReader.SingleFileName })
        {
            File.Copy(Fixtures.Path(fixture, name), Path.Combine(destination, name));
        }
        return destination;
    }

    /// <summary>The smallest token id that no input_ids of <paramref name="inputsPath"/> holds: a stale image_token_id for its prompts.</summary>
    internal static int IdAbsentFrom(string inputsPath)
    {
        using SafeTensorsReader inputs = SafeTensorsReader.Open(inputsPath);
        HashSet<int> present = inputs.ReadInt32("input_ids").ToHashSet();
        return Enumerable.Range(0, int.MaxValue).First(id => !present.Contains(id));
    }
}
