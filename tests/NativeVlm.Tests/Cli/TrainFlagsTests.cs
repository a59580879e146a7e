using System.Text.Json.Nodes;
using NativeVlm.Adapters;
using NativeVlm.Tests.Training;
using Xunit;

namespace NativeVlm.Tests.Cli;

/// <summary>
/// train's boolean flags through the real binary: declared bool? for the parser (bare --flag, --flag
/// false, the kebab-case alias) and merged over a --config JSON file, whose own values keep the file's
/// error messages. One optimizer step on <see cref="TrainCliWorkspace"/>'s tiny snapshot per run.
/// </summary>
public sealed class TrainFlagsTests(TrainCliWorkspace workspace) : IClassFixture<TrainCliWorkspace>, IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private (int ExitCode, string Output) TrainDpo(string outputDir, string config, params string[] flags)
    {
        string configPath = _dir.Path("config.json");
        File.WriteAllText(configPath, config);
        return CliTests.RunHost(["train", "dpo", "--model", workspace.Model, "--data", workspace.Preferences, "--output_dir", outputDir,
            "--config", configPath, "--lora_target_modules", "q_proj,v_proj", "--per_device_train_batch_size", "1", "--max_steps", "1", .. flags]);
    }

    private static bool UseDora(string outputDir) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(outputDir, LoraConfig.FileName)))!["use_dora"]!.GetValue<bool>();

    [Fact]
    public void A_bare_kebab_case_boolean_flag_overrides_the_config_file_with_true()
    {
        string output = _dir.Path("dora");

        (int exitCode, string log) = TrainDpo(output, """{ "use_dora": false }""", "--use-dora");

        Assert.True(exitCode == 0, log);
        Assert.True(UseDora(output));
    }

    [Fact]
    public void A_boolean_flag_set_to_false_overrides_the_config_file()
    {
        string output = _dir.Path("lora");

        (int exitCode, string log) = TrainDpo(output, """{ "use_dora": true }""", "--use_dora", "false", "--gradient_checkpointing=false");

        Assert.True(exitCode == 0, log);
        Assert.False(UseDora(output));
    }

    [Fact]
    public void A_bad_boolean_is_one_line_naming_the_flag_or_the_config_field()
    {
        string output = _dir.Path("bad");

        (int exitCode, string log) = TrainDpo(output, "{}", "--use_dora", "maybe");

        Assert.Equal(2, exitCode);
        Assert.Equal("nativevlm: --use_dora 'maybe' is not true or false (nativevlm train --help lists the flags)", log.Trim());

        (exitCode, log) = TrainDpo(output, """{ "use_dora": "maybe" }""");

        Assert.Equal(2, exitCode);
        Assert.Equal($"nativevlm: {_dir.Path("config.json")}: use_dora: 'maybe' is not true or false", log.Trim());
        Assert.False(Directory.Exists(output));
    }
}
