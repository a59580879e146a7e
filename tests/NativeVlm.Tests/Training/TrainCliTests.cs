using System.Text.Json.Nodes;
using NativeVlm.Adapters;
using NativeVlm.Data;
using NativeVlm.Demo;
using NativeVlm.IO;
using NativeVlm.Models;
using NativeVlm.Tensors;
using NativeVlm.Tests.Data;
using NativeVlm.Training;
using NativeVlm.Training.Dpo;
using NativeVlm.Training.Metrics;
using Xunit;

namespace NativeVlm.Tests.Training;

/// <summary>
/// A tiny SmolVLM-shaped snapshot (the demo's) and tiny datasets in the Hugging Face layouts, written
/// once for <see cref="TrainCliTests"/>: rlaif-v preference pairs (the demo's train and test splits)
/// and the_cauldron conversations about the same pictures.
/// </summary>
public sealed class TrainCliWorkspace : IAsyncLifetime
{
    public const int TrainPairs = 4, TestPairs = 2;

    private readonly TempDirectory _root = new();

    public string Model => _root.Path("model");

    /// <summary>The rlaif-v dataset folder: data/train-… and data/test-… parquet files.</summary>
    public string Preferences => _root.Path("preferences");

    /// <summary>One the_cauldron parquet file.</summary>
    public string Conversations => _root.Path("conversations.parquet");

    public async Task InitializeAsync()
    {
        DemoSnapshot.Create(Model, seed: 1);
        await DemoDataset.CreateAsync(Preferences, TrainPairs, TestPairs, seed: 2);
        (IReadOnlyList<DemoPair> pairs, _) = DemoDataset.Generate(TrainPairs, 1, seed: 3);
        await NetParquet.WriteConversationAsync(Conversations, pairs.Select((pair, i) => new ConversationRow(
            new RowLocation(Conversations, i),
            [new DatasetImage(PngEncoder.EncodeRgb(pair.Picture.Draw()), null)],
            [new ConversationTurn(DemoDataset.Question, pair.Chosen.Answer, null)])), rowGroupSize: 2);
    }

    public Task DisposeAsync()
    {
        _root.Dispose();
        return Task.CompletedTask;
    }
}

/// <summary>
/// nativevlm train dpo|sft through the real verb and host process on the CPU: a couple of optimizer
/// steps on the tiny workspace, then what the user gets in output_dir (a PEFT adapter that loads,
/// metrics.jsonl under TRL's names, a checkpoint per save_steps), --resume, the reference log-prob
/// cache, and bad arguments refused before any work.
/// </summary>
public sealed class TrainCliTests(TrainCliWorkspace workspace) : IClassFixture<TrainCliWorkspace>, IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly string[] DpoMetrics =
    [
        "loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected",
        "logits/chosen", "logits/rejected", "grad_norm", "learning_rate", "epoch",
    ];

    private string[] Dpo(string outputDir, params string[] more) =>
    [
        "train", "dpo", "--model", workspace.Model, "--data", workspace.Preferences, "--output_dir", outputDir,
        "--lora_target_modules", "q_proj,v_proj", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2",
        "--learning_rate", "1e-3", "--logging_steps", "1", "--seed", "7", .. more,
    ];

    [Fact]
    public void Train_dpo_writes_a_peft_adapter_trl_metrics_and_a_checkpoint_per_save_steps()
    {
        string output = _dir.Path("dpo");

        (int exitCode, string log) = CliTests.RunHost(Dpo(output, "--max_steps", "2", "--save_steps", "1"));

        Assert.True(exitCode == 0, log);
        AssertLoadableAdapter(output);
        // lora_B starts at zero (PEFT's init): non-zero values mean the optimizer stepped.
        using (SafeTensorsReader adapter = SafeTensorsReader.Open(Path.Combine(output, LoraAdapterSet.WeightsFileName)))
        {
            Assert.Contains(adapter.Names.Where(n => n.Contains("lora_B", StringComparison.Ordinal)), n => adapter.ReadFloat32(n).Any(v => v != 0));
        }
        List<JsonObject> metrics = MetricsLines(output);
        Assert.Equal([1L, 2L], metrics.Select(m => m["step"]!.GetValue<long>()));
        foreach (JsonObject line in metrics)
        {
            Assert.All(DpoMetrics, name => Assert.True(line.ContainsKey(name), $"metrics.jsonl line without {name}: {line.ToJsonString()}"));
        }
        foreach (int step in new[] { 1, 2 })
        {
            string checkpoint = Path.Combine(output, TrainingCheckpoint.Prefix + step);
            Assert.All([LoraConfig.FileName, LoraAdapterSet.WeightsFileName, TrainingCheckpoint.OptimizerFile, TrainingCheckpoint.TrainerStateFile,
                TrainingCheckpoint.ResumeStateFile], file => Assert.True(File.Exists(Path.Combine(checkpoint, file)), $"{checkpoint} lacks {file}"));
        }
        // The final adapter is the last step's.
        Assert.Equal(File.ReadAllBytes(Path.Combine(output, TrainingCheckpoint.Prefix + 2, LoraAdapterSet.WeightsFileName)),
            File.ReadAllBytes(Path.Combine(output, LoraAdapterSet.WeightsFileName)));
    }

    [Fact]
    public void Train_dpo_with_bf16_computes_in_bf16_math_and_still_trains()
    {
        string f32 = _dir.Path("f32"), bf16 = _dir.Path("bf16");
        (int exitCode, string log) = CliTests.RunHost(Dpo(f32, "--max_steps", "2"));
        Assert.True(exitCode == 0, log);

        (exitCode, log) = CliTests.RunHost(Dpo(bf16, "--max_steps", "2", "--bf16"));

        Assert.True(exitCode == 0, log);
        Assert.Contains("(none, cpu, bf16)", log);
        using SafeTensorsReader f32Adapter = SafeTensorsReader.Open(Path.Combine(f32, LoraAdapterSet.WeightsFileName));
        using SafeTensorsReader bf16Adapter = SafeTensorsReader.Open(Path.Combine(bf16, LoraAdapterSet.WeightsFileName));
        string[] loraB = bf16Adapter.Names.Where(n => n.Contains("lora_B", StringComparison.Ordinal)).ToArray();
        // lora_B starts at zero: the optimizer stepped in bf16 math too.
        Assert.Contains(loraB, n => bf16Adapter.ReadFloat32(n).Any(v => v != 0));
        // The two runs differ only in the math mode, so equal adapters would mean --bf16 never reached the ops.
        Assert.Contains(loraB, n => !bf16Adapter.ReadFloat32(n).SequenceEqual(f32Adapter.ReadFloat32(n)));
    }

    [Fact]
    public void Train_dpo_resume_continues_from_the_newest_checkpoint_to_the_uninterrupted_adapter()
    {
        // A constant schedule, so a run of 2 steps is the first half of a run of 4 (a decaying one
        // depends on the total); the data order depends only on seed and epoch.
        string[] common = ["--lr_scheduler_type", "constant", "--save_steps", "2"];
        string whole = _dir.Path("whole"), resumed = _dir.Path("resumed");
        (int exitCode, string log) = CliTests.RunHost(Dpo(whole, [.. common, "--max_steps", "4"]));
        Assert.True(exitCode == 0, log);
        (exitCode, log) = CliTests.RunHost(Dpo(resumed, [.. common, "--max_steps", "2"]));
        Assert.True(exitCode == 0, log);

        (exitCode, log) = CliTests.RunHost(Dpo(resumed, [.. common, "--max_steps", "4", "--resume"]));

        Assert.True(exitCode == 0, log);
        Assert.Contains($"resumed from {Path.Combine(resumed, TrainingCheckpoint.Prefix + 2)}", log);
        // The CPU backend is deterministic: a resumed run ends bit for bit where the uninterrupted one does.
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, LoraAdapterSet.WeightsFileName)),
            File.ReadAllBytes(Path.Combine(resumed, LoraAdapterSet.WeightsFileName)));
        // metrics.jsonl gets the resumed steps appended.
        Assert.Equal([1L, 2L, 3L, 4L], MetricsLines(resumed).Select(m => m["step"]!.GetValue<long>()));
    }

    [Fact]
    public void Precomputed_reference_log_probs_train_the_same_adapter_and_a_second_run_reuses_them()
    {
        string cache = _dir.Path("ref-cache");
        // Batches of one pair (training and eval): the cache holds each pair computed alone, exactly what
        // the reference model gives a batch of one, so the adapters must agree bit for bit.
        string[] common = ["--max_steps", "2", "--save_steps", "2", "--eval_split", "test", "--eval_steps", "2", "--per_device_eval_batch_size", "1"];
        string plain = _dir.Path("plain"), first = _dir.Path("first"), second = _dir.Path("second");

        (int exitCode, string log) = CliTests.RunHost(Dpo(plain, common));
        Assert.True(exitCode == 0, log);
        (exitCode, log) = CliTests.RunHost(Dpo(first, [.. common, "--precompute_ref_log_probs", "true", "--ref_log_probs_dir", cache]));
        Assert.True(exitCode == 0, log);
        int pairs = TrainCliWorkspace.TrainPairs + TrainCliWorkspace.TestPairs;
        Assert.Contains($"reference log-probs: {pairs} computed, 0 reused", log);
        string cacheFile = Assert.Single(Directory.GetFiles(cache, "*.jsonl"));
        string[] entries = File.ReadAllLines(cacheFile);
        Assert.Equal(pairs, entries.Length);

        (exitCode, log) = CliTests.RunHost(Dpo(second, [.. common, "--precompute_ref_log_probs", "true", "--ref_log_probs_dir", cache]));

        Assert.True(exitCode == 0, log);
        Assert.Contains($"reference log-probs: 0 computed, {pairs} reused", log);
        Assert.Equal(entries, File.ReadAllLines(cacheFile));
        byte[] expected = File.ReadAllBytes(Path.Combine(plain, LoraAdapterSet.WeightsFileName));
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(first, LoraAdapterSet.WeightsFileName)));
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(second, LoraAdapterSet.WeightsFileName)));
        // Evaluation through the cache gives the metrics the reference model gives.
        Assert.Equal(EvalLine(plain).ToJsonString(), EvalLine(second).ToJsonString());
    }

    [Fact]
    public void Precomputed_reference_log_probs_default_to_output_dir_ref_logps()
    {
        string output = _dir.Path("dpo");

        (int exitCode, string log) = CliTests.RunHost(Dpo(output, "--max_steps", "1", "--precompute_ref_log_probs", "true"));

        Assert.True(exitCode == 0, log);
        string cacheFile = Assert.Single(Directory.GetFiles(Path.Combine(output, ReferenceLogProbCache.DefaultDirectoryName), "*.jsonl"));
        Assert.Equal(TrainCliWorkspace.TrainPairs, File.ReadAllLines(cacheFile).Length);
    }

    [Fact]
    public void Train_sft_writes_a_peft_adapter_and_metrics()
    {
        string output = _dir.Path("sft");

        (int exitCode, string log) = CliTests.RunHost(
            "train", "sft", "--model", workspace.Model, "--data", workspace.Conversations, "--output_dir", output,
            "--lora_target_modules", "q_proj,v_proj", "--per_device_train_batch_size", "2", "--max_steps", "2",
            "--learning_rate", "1e-3", "--logging_steps", "1", "--save_steps", "1");

        Assert.True(exitCode == 0, log);
        AssertLoadableAdapter(output);
        List<JsonObject> metrics = MetricsLines(output);
        Assert.Equal([1L, 2L], metrics.Select(m => m["step"]!.GetValue<long>()));
        Assert.All(metrics, line => Assert.All(new[] { "loss", "grad_norm", "learning_rate", "epoch" },
            name => Assert.True(line.ContainsKey(name), $"metrics.jsonl line without {name}: {line.ToJsonString()}")));
        Assert.True(Directory.Exists(Path.Combine(output, TrainingCheckpoint.Prefix + 1)));
        Assert.True(Directory.Exists(Path.Combine(output, TrainingCheckpoint.Prefix + 2)));
    }

    [Theory]
    [InlineData("dpo", "learning_rate", "-1")]
    [InlineData("dpo", "lr_scheduler_type", "cosine_with_bumps")]
    [InlineData("dpo", "loss_type", "sigmoid,kto")]
    [InlineData("dpo", "per_device_train_batch_size", "two")]
    [InlineData("sft", "precompute_ref_log_probs", "true")]
    public void Bad_arguments_exit_2_with_one_line_naming_the_field(string objective, string field, string value)
    {
        string output = _dir.Path("bad");
        string data = objective == "dpo" ? workspace.Preferences : workspace.Conversations;

        (int exitCode, string log) = CliTests.RunHost("train", objective, "--model", workspace.Model, "--data", data,
            "--output_dir", output, "--lora_target_modules", "q_proj", $"--{field}", value);

        Assert.Equal(2, exitCode);
        string line = Assert.Single(log.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.StartsWith("nativevlm: ", line);
        Assert.Contains(field, line);
        // Refused before any work: nothing was written.
        Assert.False(Directory.Exists(output));
    }

    private void AssertLoadableAdapter(string output)
    {
        Assert.True(File.Exists(Path.Combine(output, LoraConfig.FileName)));
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(workspace.Model, ctx);
        using LoraAdapterSet adapters = LoraAdapterSet.Load(model.Linears, output);
        Assert.NotEmpty(adapters.NamedParameters);
    }

    private static List<JsonObject> MetricsLines(string output) =>
        File.ReadAllLines(Path.Combine(output, MetricsJsonlWriter.FileName)).Select(line => JsonNode.Parse(line)!.AsObject()).ToList();

    private static JsonObject EvalLine(string output) => MetricsLines(output).Single(line => line.ContainsKey("eval_loss"));
}
