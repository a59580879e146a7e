using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using NativeVlm.IO;
using NativeVlm.Tensors;

namespace NativeVlm.Training;

/// <summary>
/// Where a run stands at an optimizer-step boundary: the step (= the scheduler's step), where the next
/// micro-batch is in the data (epoch and micro-batch index in that epoch's order; a checkpoint is
/// never taken inside an accumulation window, so the window always starts afresh), what shuffled the
/// data, the LoRA dropout generator and the log so far.
/// </summary>
public sealed record TrainingPosition(
    long GlobalStep,
    int DataEpoch,
    int MicroBatchInEpoch,
    int MicroBatchesPerEpoch,
    int Seed,
    bool Shuffle,
    ulong[]? DropoutState,
    IReadOnlyList<IReadOnlyDictionary<string, double>> LogHistory);

/// <summary>
/// output_dir/checkpoint-&lt;step&gt;/: the trained weights (<see cref="TrainedWeights.Files"/>),
/// optimizer.safetensors (per parameter key: .exp_avg, .exp_avg_sq, .step), trainer_state.json
/// (transformers' global_step, epoch, log_history) and resume_state.json (<see cref="TrainingPosition"/>).
/// Written under a temporary name and renamed, so a checkpoint-N directory is always complete.
/// </summary>
public static class TrainingCheckpoint
{
    public const string Prefix = "checkpoint-";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string TrainerStateFile = "trainer_state.json";
    public const string ResumeStateFile = "resume_state.json";

    public static IReadOnlyList<string> RequiredFiles(TrainedWeights weights) =>
        [.. weights.Files, OptimizerFile, TrainerStateFile, ResumeStateFile];

    /// <summary>Writes checkpoint-&lt;step&gt; into <paramref name="outputDir"/> (replacing one of the same step) and returns its path.</summary>
    public static string Save(string outputDir, TrainedWeights weights, AdamW optimizer, TrainingPosition position, double epoch)
    {
        Directory.CreateDirectory(outputDir);
        string name = Prefix + position.GlobalStep.ToString(CultureInfo.InvariantCulture);
        string final = Path.Combine(outputDir, name);
        string temporary = Path.Combine(outputDir, $".{name}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(temporary))
        {
            Directory.Delete(temporary, recursive: true);
        }
        Directory.CreateDirectory(temporary);
        weights.Save(temporary);
        SaveOptimizer(Path.Combine(temporary, OptimizerFile), weights, optimizer);
        File.WriteAllText(Path.Combine(temporary, TrainerStateFile), TrainerStateJson(position, epoch));
        File.WriteAllText(Path.Combine(temporary, ResumeStateFile), ResumeStateJson(position));
        if (Directory.Exists(final))
        {
            string stale = Path.Combine(outputDir, $".{name}.stale-{Environment.ProcessId}");
            Directory.Move(final, stale);
            Directory.Move(temporary, final);
            Directory.Delete(stale, recursive: true);
        }
        else
        {
            Directory.Move(temporary, final);
        }
        return final;
    }

    /// <summary>checkpoint-N directories of <paramref name="outputDir"/>, oldest step first.</summary>
    public static IReadOnlyList<(long Step, string Path)> List(string outputDir)
    {
        if (!Directory.Exists(outputDir))
        {
            return [];
        }
        return Directory.GetDirectories(outputDir, Prefix + "*")
            .Select(path => (Ok: long.TryParse(Path.GetFileName(path).AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out long step), Step: step, Path: path))
            .Where(c => c.Ok)
            .Select(c => (c.Step, c.Path))
            .OrderBy(c => c.Step)
            .ToList();
    }

    /// <summary>The first required file <paramref name="directory"/> lacks, or null when it has them all.</summary>
    public static string? MissingFile(string directory, TrainedWeights weights) =>
        RequiredFiles(weights).FirstOrDefault(file => !File.Exists(Path.Combine(directory, file)));

    /// <summary>The newest checkpoint of <paramref name="outputDir"/> that has every file, or null.</summary>
    public static string? NewestComplete(string outputDir, TrainedWeights weights) =>
        List(outputDir).Reverse().Select(c => c.Path).FirstOrDefault(path => MissingFile(path, weights) == null);

    /// <summary>Removes the oldest checkpoints until at most <paramref name="limit"/> remain; returns the removed paths.</summary>
    public static IReadOnlyList<string> Prune(string outputDir, int limit)
    {
        IReadOnlyList<(long Step, string Path)> all = List(outputDir);
        var removed = new List<string>();
        foreach ((long _, string path) in all.Take(Math.Max(0, all.Count - limit)))
        {
            Directory.Delete(path, recursive: true);
            removed.Add(path);
        }
        return removed;
    }

    /// <summary>
    /// Restores the weights and the optimizer from <paramref name="directory"/> and returns the position;
    /// a missing file is an error naming it.
    /// </summary>
    public static TrainingPosition Load(string directory, TrainedWeights weights, AdamW optimizer)
    {
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"checkpoint {directory} does not exist");
        }
        if (MissingFile(directory, weights) is { } missing)
        {
            throw new FileNotFoundException($"checkpoint {directory} is incomplete: {missing} is missing", Path.Combine(directory, missing));
        }
        weights.Restore(directory);
        LoadOptimizer(Path.Combine(directory, OptimizerFile), weights, optimizer);
        return ReadResumeState(Path.Combine(directory, ResumeStateFile), Path.Combine(directory, TrainerStateFile));
    }

    private static void SaveOptimizer(string path, TrainedWeights weights, AdamW optimizer)
    {
        var writer = new SafeTensorsWriter();
        for (int i = 0; i < weights.NamedParameters.Count; i++)
        {
            string key = weights.NamedParameters[i].Key;
            (Tensor expAvg, Tensor expAvgSq, long step) = optimizer.State(i);
            writer.Add($"{key}.exp_avg", expAvg);
            writer.Add($"{key}.exp_avg_sq", expAvgSq);
            writer.AddRaw($"{key}.step", SafeTensorsDType.I64, [], BitConverter.GetBytes(step));
        }
        writer.Save(path);
    }

    private static void LoadOptimizer(string path, TrainedWeights weights, AdamW optimizer)
    {
        using SafeTensorsReader reader = SafeTensorsReader.Open(path);
        reader.RequireNames(weights.NamedParameters.SelectMany(p => new[] { $"{p.Key}.exp_avg", $"{p.Key}.exp_avg_sq", $"{p.Key}.step" }));
        for (int i = 0; i < weights.NamedParameters.Count; i++)
        {
            string key = weights.NamedParameters[i].Key;
            optimizer.SetState(i, reader.ReadFloat32($"{key}.exp_avg"), reader.ReadFloat32($"{key}.exp_avg_sq"), reader.ReadInt64($"{key}.step")[0]);
        }
    }

    private static string TrainerStateJson(TrainingPosition position, double epoch)
    {
        var history = new JsonArray();
        foreach (IReadOnlyDictionary<string, double> entry in position.LogHistory)
        {
            var item = new JsonObject();
            foreach ((string key, double value) in entry)
            {
                item[key] = key == "step" ? JsonValue.Create((long)value) : JsonValue.Create(value);
            }
            history.Add((JsonNode)item);
        }
        var state = new JsonObject
        {
            ["global_step"] = position.GlobalStep,
            ["epoch"] = epoch,
            ["log_history"] = history,
        };
        return state.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static string ResumeStateJson(TrainingPosition position)
    {
        var state = new JsonObject
        {
            ["scheduler_step"] = position.GlobalStep,
            ["data_epoch"] = position.DataEpoch,
            ["micro_batch_in_epoch"] = position.MicroBatchInEpoch,
            ["micro_batches_per_epoch"] = position.MicroBatchesPerEpoch,
            ["seed"] = position.Seed,
            ["shuffle"] = position.Shuffle,
            // Hex strings: JSON numbers lose 64-bit words in many readers.
            ["lora_dropout_rng"] = position.DropoutState == null
                ? null
                : new JsonArray(position.DropoutState.Select(w => (JsonNode)JsonValue.Create(w.ToString("x16", CultureInfo.InvariantCulture))).ToArray()),
        };
        return state.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static TrainingPosition ReadResumeState(string resumePath, string trainerStatePath)
    {
        try
        {
            JsonObject resume = JsonNode.Parse(File.ReadAllText(resumePath))!.AsObject();
            JsonObject trainer = JsonNode.Parse(File.ReadAllText(trainerStatePath))!.AsObject();
            ulong[]? dropout = resume["lora_dropout_rng"] is JsonArray words
                ? words.Select(w => ulong.Parse(w!.GetValue<string>(), NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray()
                : null;
            var history = trainer["log_history"]!.AsArray()
                .Select(entry => (IReadOnlyDictionary<string, double>)entry!.AsObject().ToDictionary(p => p.Key, p => p.Value!.GetValue<double>()))
                .ToList();
            return new TrainingPosition(
                resume["scheduler_step"]!.GetValue<long>(),
                resume["data_epoch"]!.GetValue<int>(),
                resume["micro_batch_in_epoch"]!.GetValue<int>(),
                resume["micro_batches_per_epoch"]!.GetValue<int>(),
                resume["seed"]!.GetValue<int>(),
                resume["shuffle"]!.GetValue<bool>(),
                dropout,
                history);
        }
        catch (Exception e) when (e is JsonException or NullReferenceException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{resumePath} / {trainerStatePath}: not a resume state this version writes ({e.Message})");
        }
    }
}
