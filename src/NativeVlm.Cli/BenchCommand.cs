using System.Diagnostics;
using CommandLine;
using NativeVlm.Autograd;
using NativeVlm.Interop;
using NativeVlm.Models;
using NativeVlm.Tensors;

namespace NativeVlm.Cli;

[Verb("bench", HelpText = "Time one forward of a model shaped by a config.json, with seeded random weights (no download).")]
public sealed class BenchOptions
{
    [Option("config", Required = true, HelpText = "An Idefics3 config.json (e.g. tools/configs/smolvlm-256m-instruct.json).")]
    public string Config { get; set; } = "";

    [Option("text-tokens", Default = 32, HelpText = "Text tokens after the image tokens.")]
    public int TextTokens { get; set; }

    [Option("repeat", Default = 2, HelpText = "Forward passes; the first one also warms caches.")]
    public int Repeat { get; set; }

    [Option("device", Default = "cpu", HelpText = "cpu, cuda or cuda:N.")]
    public string Device { get; set; } = "cpu";
}

/// <summary>
/// nativevlm bench: one image tile of vision_config.image_size² pixels (its image_seq_len image
/// tokens) followed by --text-tokens text tokens, forward under NoGrad; prints load time, forward
/// times, the native allocator's peak bytes and the process's peak resident memory.
/// </summary>
public static class BenchCommand
{
    public static int Run(BenchOptions options)
    {
        if (options.TextTokens < 0 || options.Repeat <= 0)
        {
            throw new ArgumentException("--text-tokens must be ≥ 0 and --repeat positive");
        }
        Idefics3Config config = Idefics3Config.Load(options.Config);
        if (config.ImageTokenId < 0 || config.ImageTokenId >= config.Text.VocabSize)
        {
            throw new ArgumentException($"{options.Config}: image_token_id {config.ImageTokenId} is outside the vocabulary (vocab_size {config.Text.VocabSize})");
        }
        using Context ctx = Context.Create(options.Device);

        var clock = Stopwatch.StartNew();
        using Idefics3Model model = Idefics3Model.Load(Weights.Random(ctx, seed: 0), config);
        long parameters = model.Parameters.Sum(p => p.ElementCount);
        Console.WriteLine($"model: {parameters:N0} parameters (random), built in {clock.Elapsed.TotalSeconds:F1} s on {ctx}");

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
        Console.WriteLine($"peak device memory: {memory.PeakBytes / 1048576.0:F0} MiB (weights {parameters * 4 / 1048576.0:F0} MiB); " +
            $"peak resident memory of the process: {PeakResidentMiB()}");
        return 0;
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

    private static int NonImageToken(Random random, Idefics3Config config)
    {
        int id;
        do
        {
            id = random.Next(config.Text.VocabSize);
        } while (id == config.ImageTokenId);
        return id;
    }

    /// <summary>VmHWM of /proc/self/status (Linux); "n/a" elsewhere.</summary>
    private static string PeakResidentMiB()
    {
        const string path = "/proc/self/status";
        string? line = File.Exists(path) ? File.ReadLines(path).FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal)) : null;
        return line == null ? "n/a" : $"{long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0:F0} MiB";
    }
}
