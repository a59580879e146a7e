using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using CommandLine;
using CommandLine.Text;
using NativeVlm.Adapters;
using NativeVlm.Autograd;
using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Interop;
using NativeVlm.Models;
using NativeVlm.Quantization;
using NativeVlm.Tensors;
using NativeVlm.Training;
using NativeVlm.Training.Dpo;
using NativeVlm.Vision;

namespace NativeVlm.Cli;

[Verb("bench", HelpText = "Time a model shaped by a config.json, with seeded random weights (no download): one forward, or with --dpo_step a DPO training step.")]
public sealed class BenchOptions
{
    [Usage(ApplicationAlias = "nativevlm")]
    public static IEnumerable<Example> Examples =>
    [
        UsageExample.Of("One forward of SmolVLM-256M-Instruct's architecture", new BenchOptions { Config = "tools/configs/smolvlm-256m-instruct.json" }),
        UsageExample.Of("Its DPO step on the GPU, as tools/gpu_reference.py's (NF4, DoRA r 8), figures to a JSON file", new BenchOptions
        {
            Config = "tools/configs/smolvlm-256m-instruct.json", DpoStep = true, Device = "cuda", Json = "dpo-step.json",
        }),
    ];

    [Option("config", Required = true, HelpText = "An Idefics3 config.json (e.g. tools/configs/smolvlm-256m-instruct.json).")]
    public string Config { get; set; } = "";

    [Option("device", Default = "cpu", HelpText = DeviceOption.Help)]
    public string Device { get; set; } = "cpu";

    [Option("quant", HelpText = "Base linears' weights: nf4 or none (default: nf4 with --dpo_step, as gpu_reference.py; none for the forward).")]
    public BaseWeightQuantization? Quant { get; set; }

    [Option("text_tokens", Default = 32, HelpText = "Forward: text tokens after the image tokens.")]
    public int TextTokens { get; set; } = 32;

    [Option("repeat", Default = 2, HelpText = "Forward: passes; the first one also warms caches.")]
    public int Repeat { get; set; } = 2;

    [Option("dpo_step", HelpText = "true: time a DPO training step (policy + reference pass, backward, clipping, AdamW) on one pair with a 4×4-tiled image instead of a forward (default false).")]
    public bool? DpoStep { get; set; }

    [Option("use_dora", HelpText = "DPO step: true for DoRA, false for plain LoRA adapters, rank --lora_r on q,k,v,o,gate,up,down_proj, the vision tower's too (default true).")]
    public bool? UseDora { get; set; }

    [Option("lora_r", Default = 8, HelpText = "DPO step: adapter rank (lora_alpha equal to it).")]
    public int LoraR { get; set; } = 8;

    [Option("image_split", Default = 4, HelpText = "DPO step: the image is split into N×N tiles plus the global one.")]
    public int ImageSplit { get; set; } = 4;

    [Option("completion_tokens", Default = 200, HelpText = "DPO step: tokens of the chosen and of the rejected completion.")]
    public int CompletionTokens { get; set; } = 200;

    [Option("warmup", Default = 2, HelpText = "DPO step: untimed steps first.")]
    public int Warmup { get; set; } = 2;

    [Option("steps", Default = 5, HelpText = "DPO step: timed steps (the median is reported).")]
    public int Steps { get; set; } = 5;

    [Option("gradient_checkpointing", HelpText = "DPO step: true to recompute each vision encoder and decoder layer in the backward (default false).")]
    public bool? GradientCheckpointing { get; set; }

    [Option("json", HelpText = "DPO step: also write the figures to this JSON file (default: none).")]
    public string? Json { get; set; }

    [Option("bf16", HelpText = DeviceOption.Bf16Help)]
    public bool? Bf16 { get; set; }
}

/// <summary>
/// nativevlm bench. Forward (default): one image tile of vision_config.image_size² pixels (its
/// image_seq_len image tokens) followed by --text_tokens text tokens, forward under NoGrad, the base
/// linears in NF4 with --quant nf4; prints load time, forward times, the native allocator's peak bytes and
/// the process's peak resident memory. --dpo_step: see <see cref="DpoStepBench"/>.
/// </summary>
public static class BenchCommand
{
    public static int Run(BenchOptions options)
    {
        if (options.DpoStep == true)
        {
            return DpoStepBench.Run(options);
        }
        if (options.Json != null || options.GradientCheckpointing != null || options.UseDora != null)
        {
            throw new ArgumentException("--json, --gradient_checkpointing and --use_dora belong to --dpo_step");
        }
        if (options.TextTokens < 0 || options.Repeat <= 0)
        {
            throw new ArgumentException("--text_tokens must be ≥ 0 and --repeat positive");
        }
        Idefics3Config config = LoadConfig(options.Config);
        using Context ctx = DeviceOption.Open(options.Device, options.Bf16);

        var clock = Stopwatch.StartNew();
        using Idefics3Model model = Idefics3Model.Load(Weights.Random(ctx, seed: 0), config);
        long parameters = model.Parameters.Sum(p => p.ElementCount);
        Console.WriteLine($"model: {parameters:N0} parameters (random), built in {clock.Elapsed.TotalSeconds:F1} s on {ctx}" +
            (ctx.MathMode == MathMode.Bf16 ? " (bf16 math)" : ""));
        QuantizationReport? quantization = options.Quant == BaseWeightQuantization.Nf4 ? model.QuantizeLinears() : null;
        if (quantization != null)
        {
            Console.WriteLine(quantization);
        }

        Idefics3Inputs inputs = OneTileInputs(config, options.TextTokens);
        Console.WriteLine($"input: 1 tile {config.Vision.ImageSize}×{config.Vision.ImageSize} px ({config.Vision.NumPatches} patches), " +
            $"{config.ImageSeqLen} image tokens + {options.TextTokens} text tokens");

        ctx.ResetPeakMemory();
        for (int run = 1; run <= options.Repeat; run++)
        {
            clock.Restart();
            using (var scope = new TensorScope())
            using (Tape.NoGrad())
            {
                Tensor hidden = model.Forward(inputs);
                model.NextTokenLogProbs(hidden, inputs);
                ctx.Synchronize();
            }
            Console.WriteLine($"forward {run}: {clock.Elapsed.TotalMilliseconds:F0} ms");
        }
        MemoryStats memory = ctx.Memory;
        Console.WriteLine($"peak device memory: {MiB(memory.PeakBytes)} (weights {MiB(parameters * 4 - (quantization?.BytesSaved ?? 0))}); " +
            $"peak resident memory of the process: {PeakResidentMiB()}");
        return 0;
    }

    internal static Idefics3Config LoadConfig(string path)
    {
        Idefics3Config config = Idefics3Config.Load(path);
        if (config.ImageTokenId < 0 || config.ImageTokenId >= config.Text.VocabSize)
        {
            throw new ArgumentException($"{path}: image_token_id {config.ImageTokenId} is outside the vocabulary (vocab_size {config.Text.VocabSize})");
        }
        return config;
    }

    private static Idefics3Inputs OneTileInputs(Idefics3Config config, int textTokens)
    {
        int size = config.Vision.ImageSize, channels = config.Vision.NumChannels;
        int seq = config.ImageSeqLen + textTokens;
        var random = new Random(1);
        int[] ids = Enumerable.Repeat(config.ImageTokenId, config.ImageSeqLen)
            .Concat(Enumerable.Range(0, textTokens).Select(_ => NonImageToken(random, config)))
            .ToArray();
        float[] pixels = Enumerable.Range(0, channels * size * size).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        return new Idefics3Inputs(1, seq, ids, Enumerable.Repeat((byte)1, seq).ToArray(), pixels, [1, 1, channels, size, size],
            Enumerable.Repeat((byte)1, size * size).ToArray(), Labels: null, TargetMask: null);
    }

    internal static int NonImageToken(Random random, Idefics3Config config)
    {
        int id;
        do
        {
            id = random.Next(config.Text.VocabSize);
        } while (id == config.ImageTokenId);
        return id;
    }

    internal static string MiB(long bytes) => $"{bytes / 1048576.0:F0} MiB";

    /// <summary>VmHWM of /proc/self/status (Linux); "n/a" elsewhere.</summary>
    internal static string PeakResidentMiB()
    {
        const string path = "/proc/self/status";
        string? line = File.Exists(path) ? File.ReadLines(path).FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal)) : null;
        return line == null ? "n/a" : $"{PeakResidentKiB(line) / 1024.0:F0} MiB";
    }

    /// <summary>
    /// The KiB of a /proc/self/status "VmHWM:" line. The kernel pads the number after the tab with spaces
    /// to eight places ("VmHWM:\t    2196 kB"), so from eight digits on no space precedes it.
    /// </summary>
    public static long PeakResidentKiB(string line) =>
        long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
}

/// <summary>
/// nativevlm bench --dpo_step: the DPO training step of `nativevlm train --objective dpo` on one synthetic
/// pair, shaped as tools/gpu_reference.py's transformers + peft step so that the two can be set side by
/// side. The model has seeded random weights, its base linears in NF4 (--quant), adapters (DoRA r=8 by
/// default) on q,k,v,o,gate,up,down_proj matched by suffix (so the vision tower's q/k/v_proj too, as PEFT
/// does). The pair: a prompt with one image split N×N (the processor's expansion of Idefics3Prompt, so
/// N²+1 frames and as many image_seq_len blocks of image tokens), chosen and rejected completions of
/// --completion_tokens random tokens; collated by BatchCollator into 2 model rows. One step is what the
/// Trainer does per optimizer step: DpoObjective.Step (reference pass with the adapters off, policy pass,
/// backward; sigmoid loss, β 0.1), GradientClipping (max_grad_norm 1), AdamW update, zero_grad.
/// </summary>
public static partial class DpoStepBench
{
    /// <summary>PEFT's names, as gpu_reference.py's LORA_TARGETS.</summary>
    private static readonly string[] TargetNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>gpu_reference.py's prompt: 8 text tokens, 2 + image_seq_len per frame, 24 text tokens.</summary>
    private const int TextBeforeImage = 8, ReferenceTokensPerFrameBesidesImage = 2, ReferenceTextAfterImage = 24;

    private const double LearningRate = 1e-5, MaxGradNorm = 1.0;

    public static int Run(BenchOptions options)
    {
        bool nf4 = (options.Quant ?? BaseWeightQuantization.Nf4) == BaseWeightQuantization.Nf4;
        bool dora = options.UseDora ?? true;
        bool checkpointing = options.GradientCheckpointing ?? false;
        if (options.LoraR <= 0 || options.ImageSplit <= 0 || options.CompletionTokens <= 0 || options.Warmup < 0 || options.Steps <= 0)
        {
            throw new ArgumentException("--lora_r, --image_split, --completion_tokens and --steps must be positive, --warmup ≥ 0");
        }
        Idefics3Config config = BenchCommand.LoadConfig(options.Config);
        using Context ctx = DeviceOption.Open(options.Device, options.Bf16);

        var clock = Stopwatch.StartNew();
        using Idefics3Model model = Idefics3Model.Load(Weights.Random(ctx, seed: 0), config);
        long parameters = Idefics3Model.ParameterCount(config);
        QuantizationReport? quantization = nf4 ? model.QuantizeLinears() : null;
        model.GradientCheckpointing = checkpointing;
        using LoraAdapterSet adapters = LoraAdapterSet.Create(model.Linears,
            LoraConfig.Create(TargetModules.FromNames(TargetNames), options.LoraR, options.LoraR, useDora: dora), seed: 0);
        adapters.Training = true;
        Tensor[] trainable = adapters.Parameters.ToArray();
        long trainableCount = trainable.Sum(p => p.ElementCount);
        double buildSeconds = clock.Elapsed.TotalSeconds;
        string settings = $"{(ctx.MathMode == MathMode.Bf16 ? "bf16 math, " : "")}{(ctx.SavedActivationDType == DType.BF16 ? "bf16 activations, " : "")}base {(nf4 ? "NF4" : "f32")}, {(dora ? "DoRA" : "LoRA")} r={options.LoraR} alpha={options.LoraR} on {string.Join(",", TargetNames)}";
        Console.WriteLine($"model: {parameters:N0} parameters (random), {settings}: {adapters.Adapters.Count} adapters, " +
            $"{trainableCount:N0} trainable; built in {buildSeconds:F1} s on {ctx}" +
            (checkpointing ? "; gradient checkpointing" : ""));

        (DpoBatch batch, PairShape shape) = SyntheticPair(config, options.ImageSplit, options.CompletionTokens);
        Console.WriteLine($"pair: prompt {shape.PromptTokens} tokens ({shape.ImageTokens} image tokens of {shape.Frames} frames " +
            $"{config.Vision.ImageSize}² px, a {options.ImageSplit}×{options.ImageSplit} split + global), completions {options.CompletionTokens} tokens; " +
            $"model rows 2 × {shape.SequenceTokens} tokens");

        var objective = new DpoObjective(model, adapters, new DpoLoss(new DpoLossOptions()));
        using var optimizer = new AdamW(trainable);
        var losses = new List<double>();
        void Step()
        {
            DpoStepResult result = objective.Step(batch, lossScale: 1.0);
            GradientClipping.ClipGradNorm(trainable, MaxGradNorm);
            optimizer.Update((float)LearningRate);
            optimizer.ZeroGrad();
            ctx.Synchronize();
            losses.Add(result.Loss);
        }

        for (int i = 0; i < options.Warmup; i++)
        {
            clock.Restart();
            Step();
            Console.WriteLine($"warm-up step {i + 1}: {clock.Elapsed.TotalMilliseconds:F0} ms, loss {losses[^1]:F6}");
        }
        // The peak of the timed steps, as gpu_reference.py resets torch's peak after its warm-up.
        ctx.Synchronize();
        ctx.ResetPeakMemory();
        // What lives across steps (weights, adapters, and the optimiser's moments once a step has made them),
        // so that the peak's activation share reads off.
        long heldBytes = ctx.Memory.LiveBytes;
        var stepMs = new List<double>();
        for (int i = 0; i < options.Steps; i++)
        {
            clock.Restart();
            Step();
            stepMs.Add(clock.Elapsed.TotalMilliseconds);
            Console.WriteLine($"step {i + 1}: {stepMs[^1]:F0} ms, loss {losses[^1]:F6}");
        }
        long peakBytes = ctx.Memory.PeakBytes;
        double median = Median(stepMs);
        double pairsPerSecond = batch.Batch * 1000.0 / median;
        double tokensPerSecond = 2 * batch.Batch * shape.SequenceTokens * 1000.0 / median;
        Console.WriteLine($"dpo step: {median:F1} ms (median of {options.Steps}), {pairsPerSecond:F3} pairs/s, {tokensPerSecond:F0} tokens/s; " +
            $"peak device memory {BenchCommand.MiB(peakBytes)} ({BenchCommand.MiB(heldBytes)} held before the step); " +
            $"peak resident memory of the process {BenchCommand.PeakResidentMiB()}");

        if (options.Json != null)
        {
            WriteJson(options.Json, writer =>
            {
                writer.WriteString("config", options.Config);
                writer.WriteString("device", ctx.ToString());
                writer.WriteNumber("parameters", parameters);
                writer.WriteString("quant", nf4 ? "nf4" : "none");
                if (quantization != null)
                {
                    writer.WriteNumber("quantized_linears", quantization.QuantizedModules);
                }
                writer.WriteString("adapter", dora ? "dora" : "lora");
                writer.WriteNumber("lora_r", options.LoraR);
                writer.WriteNumber("lora_alpha", options.LoraR);
                writer.WriteStartArray("target_modules");
                foreach (string name in TargetNames)
                {
                    writer.WriteStringValue(name);
                }
                writer.WriteEndArray();
                writer.WriteNumber("adapters", adapters.Adapters.Count);
                writer.WriteNumber("trainable_params", trainableCount);
                writer.WriteBoolean("gradient_checkpointing", checkpointing);
                writer.WriteBoolean("bf16", ctx.MathMode == MathMode.Bf16);
                writer.WriteString("saved_activations", ctx.SavedActivationDType == DType.BF16 ? "bf16" : "f32");
                writer.WriteNumber("beta", objective.Loss.Options.Beta);
                writer.WriteNumber("pairs", batch.Batch);
                writer.WriteNumber("batch", 2 * batch.Batch);
                writer.WriteNumber("tiles", shape.Frames);
                writer.WriteNumber("image_tokens", shape.ImageTokens);
                writer.WriteNumber("prompt_tokens", shape.PromptTokens);
                writer.WriteNumber("completion_tokens", options.CompletionTokens);
                writer.WriteNumber("sequence_tokens", shape.SequenceTokens);
                writer.WriteNumber("build_s", buildSeconds);
                writer.WriteNumber("warmup_steps", options.Warmup);
                writer.WriteNumber("step_ms", median);
                writer.WriteStartArray("step_ms_all");
                foreach (double ms in stepMs)
                {
                    writer.WriteNumberValue(ms);
                }
                writer.WriteEndArray();
                writer.WriteNumber("pairs_per_s", pairsPerSecond);
                writer.WriteNumber("tokens_per_s", tokensPerSecond);
                writer.WriteNumber("peak_device_memory_bytes", peakBytes);
                writer.WriteNumber("held_before_step_bytes", heldBytes);
                writer.WriteNumber("last_loss", losses[^1]);
            });
            Console.WriteLine($"figures written to {options.Json}");
        }
        return 0;
    }

    /// <summary>What the synthetic pair holds; the model rows are prompt + completion, chosen and rejected alike.</summary>
    private sealed record PairShape(int Frames, int ImageTokens, int PromptTokens, int SequenceTokens);

    /// <summary>
    /// One preference pair, collated. Token ids are random text ids (with random weights only the counts
    /// matter); the image's tokens are Idefics3Prompt's expansion for rows = cols = split, one id per
    /// special token and per newline. gpu_reference.py lays its prompt out as 8 text tokens, per frame 2
    /// tokens and the image tokens, then 24 text tokens; the text after the image here is as long as makes
    /// the prompt that long, so both sides run the same sequence length with the same image tokens.
    /// </summary>
    private static (DpoBatch Batch, PairShape Shape) SyntheticPair(Idefics3Config config, int split, int completionTokens)
    {
        var random = new Random(1);
        int frames = split * split + 1;
        string expansion = new Idefics3Prompt(config.ImageSeqLen).ImageString(split, split);
        int[] imageBlock = Tokens(expansion).Select(token => token == Idefics3Prompt.ImageToken
            ? config.ImageTokenId
            : BenchCommand.NonImageToken(random, config)).ToArray();
        int referencePrompt = TextBeforeImage + frames * (ReferenceTokensPerFrameBesidesImage + config.ImageSeqLen) + ReferenceTextAfterImage;
        int textAfterImage = referencePrompt - TextBeforeImage - imageBlock.Length;
        if (textAfterImage < 0)
        {
            throw new InvalidOperationException($"the {split}×{split} expansion has {imageBlock.Length} tokens, more than gpu_reference.py's prompt of {referencePrompt}");
        }
        int[] Text(int count) => Enumerable.Range(0, count).Select(_ => BenchCommand.NonImageToken(random, config)).ToArray();
        int[] prompt = [.. Text(TextBeforeImage), .. imageBlock, .. Text(textAfterImage)];

        int size = config.Vision.ImageSize, channels = config.Vision.NumChannels;
        var pixels = new float[(long)frames * channels * size * size];
        for (long i = 0; i < pixels.LongLength; i++)
        {
            pixels[i] = (float)(random.NextDouble() * 2 - 1);
        }
        byte[] pixelMask = new byte[frames * size * size];
        Array.Fill(pixelMask, (byte)1);
        var images = new SampleImages(pixels, pixelMask, frames, size, size, [split], [split]);
        var sample = new DpoSample(new RowLocation("bench --dpo_step", 0), prompt, Text(completionTokens), Text(completionTokens), images);
        DpoBatch batch = new BatchCollator(config.Text.PadTokenId ?? 0).CollateDpo([sample]);
        int imageTokens = prompt.Count(id => id == config.ImageTokenId);
        return (batch, new PairShape(frames, imageTokens, prompt.Length, batch.ModelInputs.SeqLen));
    }

    /// <summary>The expansion's tokens: each &lt;…&gt; special token and each newline is one.</summary>
    private static List<string> Tokens(string expansion)
    {
        List<string> tokens = SpecialTokenOrNewline().Matches(expansion).Select(m => m.Value).ToList();
        if (tokens.Sum(t => t.Length) != expansion.Length)
        {
            throw new InvalidOperationException("Idefics3Prompt's expansion holds text other than special tokens and newlines");
        }
        return tokens;
    }

    [GeneratedRegex(@"<[^<>]+>|\n")]
    private static partial Regex SpecialTokenOrNewline();

    private static double Median(List<double> values)
    {
        double[] sorted = values.Order().ToArray();
        int middle = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }

    private static void WriteJson(string path, Action<Utf8JsonWriter> writeFields)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        Directory.CreateDirectory(folder!);
        using FileStream file = File.Create(path);
        using var writer = new Utf8JsonWriter(file, new JsonWriterOptions { Indented = true });
        writer.WriteStartObject();
        writeFields(writer);
        writer.WriteEndObject();
    }
}
