using NativeVlm.IO;
using NativeVlm.Tensors;
using NativeVlm.Training;

namespace NativeVlm.Models;

/// <summary>
/// Hands model parameters out of a snapshot under Hugging Face's names, one prefix level at a time
/// (as candle's VarBuilder: <c>w.Sub("self_attn").Sub("q_proj").Get("weight", n, k)</c>).
/// Problems are collected rather than thrown one by one: a missing tensor or a shape that disagrees
/// with the config is noted (and a zero stand-in returned so loading can go on), and
/// <see cref="ThrowIfInvalid"/> then reports all of them at once, together with every tensor of the
/// snapshot that no module took. <see cref="Random"/> hands out seeded random values instead, for
/// benchmarks of real architectures whose weights are not at hand.
/// </summary>
public sealed class Weights
{
    private readonly Shared _shared;
    private readonly string _prefix;

    private sealed class Shared(SafeTensorsReader? reader, Random? random, Context context)
    {
        /// <summary>Null when the weights are random.</summary>
        public SafeTensorsReader? Reader { get; } = reader;
        public Random? Random { get; } = random;
        public Context Context { get; } = context;
        public HashSet<string> Taken { get; } = [];
        public List<string> Missing { get; } = [];
        public List<string> WrongShape { get; } = [];
    }

    public Weights(SafeTensorsReader reader, Context context) : this(new Shared(reader, null, context), "") { }

    /// <summary>Every requested tensor is N(0, 0.02²) from <paramref name="seed"/> (GPT-2's init scale).</summary>
    public static Weights Random(Context context, int seed) => new(new Shared(null, new Random(seed), context), "");

    private Weights(Shared shared, string prefix)
    {
        _shared = shared;
        _prefix = prefix;
    }

    public Context Context => _shared.Context;

    /// <summary>The path of the module this scope loads, as Hugging Face names it ("model.text_model.layers.0.self_attn.q_proj").</summary>
    public string ModuleName => _prefix.TrimEnd('.');

    /// <summary>The weights under <c>prefix.part.</c>.</summary>
    public Weights Sub(string part) => new(_shared, $"{_prefix}{part}.");

    public bool Contains(string name) => _shared.Reader?.Contains(_prefix + name) ?? true;

    /// <summary>
    /// The tensor <c>prefix.name</c> as f32 in the model's context, owned by the caller, whose shape
    /// must be <paramref name="shape"/> (what the config implies).
    /// </summary>
    public Tensor Get(string name, params long[] shape)
    {
        string full = _prefix + name;
        if (_shared.Reader == null)
        {
            return RandomTensor(shape);
        }
        if (!_shared.Reader.Contains(full))
        {
            _shared.Missing.Add(full);
            return Tensor.Zeros(Context, DType.F32, shape);
        }
        _shared.Taken.Add(full);
        long[] actual = _shared.Reader.GetInfo(full).Shape.ToArray();
        if (!actual.SequenceEqual(shape))
        {
            _shared.WrongShape.Add($"{full} is [{string.Join(", ", actual)}], the config implies [{string.Join(", ", shape)}]");
            return Tensor.Zeros(Context, DType.F32, shape);
        }
        return _shared.Reader.ToTensor(Context, full);
    }

    // Values are drawn in fixed chunks, each from its own generator seeded by the tensor's seed and the
    // chunk's index, so chunks fill in parallel (a 2-billion-parameter model in seconds) and the values
    // do not depend on the number of threads.
    private const int RandomChunk = 1 << 16;

    private Tensor RandomTensor(long[] shape)
    {
        var values = new float[shape.Aggregate(1L, (a, d) => a * d)];
        ulong tensorSeed = (ulong)_shared.Random!.NextInt64();
        int chunks = (values.Length + RandomChunk - 1) / RandomChunk;
        Parallel.For(0, chunks, chunk =>
        {
            var random = new Xoshiro256(tensorSeed + (ulong)chunk * 0x9E3779B97F4A7C15UL);
            int end = Math.Min(values.Length, (chunk + 1) * RandomChunk);
            for (int i = chunk * RandomChunk; i < end; i++)
            {
                // Box–Muller: one normal sample from two uniforms.
                double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
                values[i] = (float)(0.02 * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
            }
        });
        return Tensor.FromArray(Context, values, shape);
    }

    /// <summary>Marks <c>prefix.name</c>, if present, as consumed without loading it (e.g. a tied copy).</summary>
    public void Ignore(string name)
    {
        if (_shared.Reader?.Contains(_prefix + name) == true)
        {
            _shared.Taken.Add(_prefix + name);
        }
    }

    /// <summary>Throws one error listing every missing, misshapen and unused tensor, if there is any.</summary>
    public void ThrowIfInvalid()
    {
        if (_shared.Reader == null)
        {
            return;
        }
        List<string> unused = _shared.Reader.Names.Where(n => !_shared.Taken.Contains(n)).Order(StringComparer.Ordinal).ToList();
        var problems = new List<string>();
        if (_shared.Missing.Count > 0)
        {
            problems.Add($"missing tensors ({_shared.Missing.Count}): {string.Join(", ", _shared.Missing)}");
        }
        if (_shared.WrongShape.Count > 0)
        {
            problems.Add($"shapes that disagree with config.json ({_shared.WrongShape.Count}): {string.Join("; ", _shared.WrongShape)}");
        }
        if (unused.Count > 0)
        {
            problems.Add($"unexpected tensors ({unused.Count}): {string.Join(", ", unused)}");
        }
        if (problems.Count > 0)
        {
            throw new SafeTensorsException(_shared.Reader.SourcePath, null, string.Join(". ", problems));
        }
    }
}
