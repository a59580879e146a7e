using System.Text.Json;
using NativeVlm.Cli;
using Xunit;

namespace NativeVlm.Tests;

/// <summary>
/// nativevlm bench through the real console host, on a config small enough for the CPU (the SmolVLM
/// configs of tools/configs take minutes here): the forward, and --dpo_step with the JSON it writes for
/// tools/gpu_report.py.
/// </summary>
public sealed class BenchTests : IDisposable
{
    // 16×16 images in 4×4 patches → 16 patches, pixel-shuffled by 2 → 4 image tokens per frame.
    private const string TinyConfig = """
        {
          "scale_factor": 2, "image_token_id": 99, "tie_word_embeddings": false,
          "vision_config": { "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "image_size": 16, "patch_size": 4 },
          "text_config": { "model_type": "llama", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "pad_token_id": 0 }
        }
        """;

    private const int ImageSeqLen = 4;

    private readonly string _dir = Directory.CreateTempSubdirectory("nvlm-bench-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private JsonElement RunDpoStep(params string[] extra)
    {
        string config = Path.Combine(_dir, "config.json"), json = Path.Combine(_dir, "dpo-step.json");
        File.WriteAllText(config, TinyConfig);
        (int exitCode, string output) = CliTests.RunHost(["bench", "--dpo_step", "--config", config, "--json", json,
            "--warmup", "1", "--steps", "2", .. extra]);
        Assert.True(exitCode == 0, output);
        Assert.Contains("pairs/s", output);
        return JsonDocument.Parse(File.ReadAllText(json)).RootElement;
    }

    [Fact]
    public void Dpo_step_writes_positive_timings_memory_and_a_finite_loss()
    {
        JsonElement figures = RunDpoStep();

        foreach (string field in new[] { "step_ms", "pairs_per_s", "tokens_per_s", "peak_device_memory_bytes", "trainable_params", "build_s" })
        {
            Assert.True(figures.GetProperty(field).GetDouble() > 0, $"{field} = {figures.GetProperty(field)}");
        }
        Assert.Equal(2, figures.GetProperty("step_ms_all").GetArrayLength());
        Assert.True(double.IsFinite(figures.GetProperty("last_loss").GetDouble()));
        Assert.Equal("nf4", figures.GetProperty("quant").GetString());
        Assert.Equal("dora", figures.GetProperty("adapter").GetString());
        Assert.Equal(8, figures.GetProperty("lora_r").GetInt32());
        Assert.False(figures.GetProperty("gradient_checkpointing").GetBoolean());
        Assert.Equal("f32", figures.GetProperty("saved_activations").GetString());
        // The weights and adapters stay for the whole step, and the step's activations come on top.
        long held = figures.GetProperty("held_before_step_bytes").GetInt64();
        Assert.InRange(held, 1, figures.GetProperty("peak_device_memory_bytes").GetInt64() - 1);
        // One pair of one pair's rows: pairs/s is 1000 / ms per step.
        Assert.Equal(1000 / figures.GetProperty("step_ms").GetDouble(), figures.GetProperty("pairs_per_s").GetDouble(), 1e-9);
    }

    [Fact]
    public void Dpo_step_has_the_token_counts_of_gpu_reference_py()
    {
        JsonElement figures = RunDpoStep();

        // gpu_reference.py: 17 frames (4×4 + global), a prompt of 8 + 17 · (2 + image_seq_len) + 24 tokens, 200 completion tokens.
        Assert.Equal(17, figures.GetProperty("tiles").GetInt32());
        Assert.Equal(17 * ImageSeqLen, figures.GetProperty("image_tokens").GetInt32());
        Assert.Equal(8 + 17 * (2 + ImageSeqLen) + 24, figures.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(200, figures.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(8 + 17 * (2 + ImageSeqLen) + 24 + 200, figures.GetProperty("sequence_tokens").GetInt32());
        Assert.Equal(2, figures.GetProperty("batch").GetInt32());
    }

    [Fact]
    public void Dpo_step_runs_dense_lora_with_gradient_checkpointing()
    {
        // The kebab-case spellings and a bare boolean, as transformers' HfArgumentParser takes them.
        JsonElement figures = RunDpoStep("--quant", "none", "--use-dora", "false", "--gradient-checkpointing");

        Assert.Equal("none", figures.GetProperty("quant").GetString());
        Assert.Equal("lora", figures.GetProperty("adapter").GetString());
        Assert.True(figures.GetProperty("gradient_checkpointing").GetBoolean());
        Assert.True(double.IsFinite(figures.GetProperty("last_loss").GetDouble()));
        Assert.True(figures.GetProperty("step_ms").GetDouble() > 0);
    }

    [Theory]
    [InlineData("VmHWM:\t    2196 kB", 2196)]
    [InlineData("VmHWM:\t15123456 kB", 15123456)] // eight digits: no space between the tab and the number
    public void Peak_resident_memory_reads_the_kernels_status_line(string line, long kib)
    {
        Assert.Equal(kib, BenchCommand.PeakResidentKiB(line));
    }

    [Fact]
    public void Dpo_step_in_bf16_math_says_so_and_records_it()
    {
        JsonElement figures = RunDpoStep("--bf16");

        Assert.True(figures.GetProperty("bf16").GetBoolean());
        Assert.True(double.IsFinite(figures.GetProperty("last_loss").GetDouble()));
        Assert.False(RunDpoStep().GetProperty("bf16").GetBoolean());
    }

    [Fact]
    public void Forward_runs_on_nf4_base_weights_and_prints_its_times()
    {
        string config = Path.Combine(_dir, "config.json");
        File.WriteAllText(config, TinyConfig);

        (int exitCode, string output) = CliTests.RunHost("bench", "--config", config, "--text_tokens", "3", "--repeat", "2", "--quant", "nf4");

        Assert.True(exitCode == 0, output);
        Assert.Contains($"input: 1 tile 16×16 px (16 patches), {ImageSeqLen} image tokens + 3 text tokens", output);
        Assert.Contains("NF4 base weights: ", output);
        Assert.Matches(@"forward 1: \d+ ms", output);
        Assert.Matches(@"forward 2: \d+ ms", output);
        Assert.Contains("peak device memory: ", output);
    }

    [Fact]
    public void Forward_bench_rejects_the_dpo_step_options()
    {
        string config = Path.Combine(_dir, "config.json");
        File.WriteAllText(config, TinyConfig);

        (int exitCode, string output) = CliTests.RunHost("bench", "--config", config, "--json", Path.Combine(_dir, "x.json"));

        Assert.Equal(2, exitCode);
        Assert.Contains("--dpo_step", output);
    }
}
