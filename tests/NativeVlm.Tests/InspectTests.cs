using System.Globalization;
using System.Text.Json.Nodes;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>nativevlm inspect through the real binary, against PEFT's counts for the real SmolVLM configs.</summary>
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
        string dir = Directory.CreateTempSubdirectory("nvlm-inspect-").FullName;
        try
        {
            string configPath = Path.Combine(dir, "config.json");
            string adapterPath = Path.Combine(dir, "adapter_config.json");
            File.WriteAllText(configPath, counts["models"]![model]!["config"]!.ToJsonString());
            File.WriteAllText(adapterPath, counts["adapters"]![adapter]!.ToJsonString());

            (int exitCode, string output) = CliTests.RunHost("inspect", "--config", configPath, "--adapter-config", adapterPath);

            Assert.True(exitCode == 0, output);
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
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    [Trait("Category", Fixtures.Category)]
    public void Inspects_a_snapshot_and_checks_its_weights_against_the_config()
    {
        (int exitCode, string output) = CliTests.RunHost("inspect", "--model", Fixtures.Path("tiny-idefics3"),
            "--target-modules", "q_proj,v_proj", "--lora-r", "4", "--use-dora");

        Assert.True(exitCode == 0, output);
        Assert.Contains("every one as config.json implies", output);
        Assert.Contains("adapter: DoRA r=4 alpha=8 on q_proj, v_proj", output);
        Assert.Matches(@"trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}", output);
        Assert.Contains("findings: none", output);
    }

    [Fact]
    public void Help_exits_zero_and_lists_the_flags()
    {
        (int exitCode, string output) = CliTests.RunHost("inspect", "--help");

        Assert.Equal(0, exitCode);
        Assert.Contains("--adapter-config", output);
        Assert.Contains("--target-modules", output);
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
}
