//! Golden frames: the sha256 of the frame every spec writes for one fixed input, and of what it
//! decodes to. Frames cross machines and versions (client and server may run different builds),
//! so a refactor of the codecs must leave every byte where it was; a deliberate format change
//! updates these digests together with the format version.

use std::fmt::Write;

use fedcodec::rng::SplitMix64;
use fedcodec::{decode, encode, Accumulator, Spec};
use sha2::{Digest, Sha256};

/// Every stage kind with its options, alone and chained behind the sparsifiers.
const GOLDEN: [(&str, &str, &str); 40] = [
    (
        "none",
        "fd72930ba29ab17ba96213517ebd73e93dd50740f51392bdfe8ca51521f00499",
        "bab7efb27e396c880449fcdd7ffcf934882c087130cc0bf043a6597c496845a9",
    ),
    (
        "f16",
        "434b9862628efc17dc016a421949323c80181e68321c23c55ee3c9d0d8a8eea4",
        "42927942b8c8457d3f33ef47d6a0cfbcad747f5c3d44383398c5c2b61ddae60e",
    ),
    (
        "bf16",
        "6242c538c141330c6c722f89d866d4af034983060d943ed20b06fea43c696196",
        "4547590e57cc446279a7e866b7a1a0f9ed6cc57f0763491b6b74da2630dfffcf",
    ),
    (
        "quant:1",
        "7055df9bdf8a4a8a71bc3c7aa9d16d304e5dadcdfda66d39c5bdc864a24ebbb8",
        "3cf6ae3a5b68765ec50afec021d3a7a56c4486f5c47c81ea93d22d61b0d98ae1",
    ),
    (
        "quant:2",
        "e97c83c0e1bc425ff20f97861ac33c2ba5ae68be1028c4dc77ebe34bf6068af5",
        "20c0a2b8891a588681edfc1e089dd5147b5092948a3057bcdafa0bd0089fd8b9",
    ),
    (
        "quant:3:stochastic",
        "9e36aa98bdf3b7bfd20a5c3e148fe3b8e6b507541e0594fd1654fe0a9ef7a640",
        "9b59e8ff837126f5f538b4e2cc8f052becc21d61bf935de9051c09009f5d6604",
    ),
    (
        "quant:4",
        "446d83275afce716386713eceee1d4828fc34c191916dcb798da82539dff28e6",
        "e19b794e00a45fc2385615717fd12d6df0aa467228280ebf109a644dcb296f92",
    ),
    (
        "quant:7",
        "36fce25acbe529f610eb69a746b789139701742f8e0ea5f6b3177de5e2548bbd",
        "a45f5f5716d7fa63b241f697a6e3281af79fa63d0e56fea9b277c02ae5bb1a27",
    ),
    (
        "quant:8",
        "dbfd17c1e37d02e8313f98a471dc67899ae65432b89901789e7ec7470dbe10d2",
        "48cda17ed22d4774810d020fb161e9a9c1e3c525edf19f792fc9e0d4f4868c5d",
    ),
    (
        "quant:8:stochastic",
        "0fe44ba3c5fa2e82b0897774f98712488d3c290cddb77572865e498e90c7cf3b",
        "2195adef6e4ae175ca0dc7ed6a67948adc0d631604aaea8696c650e3985ac9d6",
    ),
    (
        "quant:12",
        "024377e920c8e60947bd72eaba9941ef44f466ed50f0b9c21c7540e8152a36f5",
        "515c4351da54bef0bf14659a1e241b391f6b1f9e90947762a299dcbcb30933fa",
    ),
    (
        "quant:16",
        "bce059d8d2d1fdf6bf56560e925c96370a96f4f5b5ef1f5db048e3aa4db9b3c4",
        "11c027af54fca00d3d5486cbb7695d849151e0ddef9511e03a34b7cd03442e7a",
    ),
    (
        "quant:2:chunk=1024",
        "a6957dd11fb9be29cb6db729c3a563c67d3b80db0519937ca1ae70a74da36606",
        "b998a7579b66a60985522e751a86757a7f236a023ccf963a8ce2b9df3f9fc730",
    ),
    (
        "qsgd:1",
        "326e8daa574f220a04d5866ed614dc8f45dd607bb0e83dee22bb3b5a8dbfd71e",
        "f0ba97fc5c20bb1fbc29eb022c8d5c525615b042818a1331cdab64be2b968a81",
    ),
    (
        "qsgd:4",
        "3d879ec7e34f5790b89ca5ce563dee60647abb51f4bcb919c49784ec803c0d41",
        "243e40cb8807a164183802e2a7dc1079ee7e35c8ab28c724721c221127cf6d13",
    ),
    (
        "qsgd:127",
        "85bd800a0fe06ceb7571202d57b2f7a9bc969fde350bc9bc852ef6875c7b1ac2",
        "5c72f07025699ce8f662a0980cf562af533741a210ca8272691379c5eb4a7a6f",
    ),
    (
        "qsgd:8:bucket=512",
        "d64981c7430459496494286e8d265eec3863370110a11f10b45d1cc2a5915328",
        "4bec548b592898ae6508f0f8c94a4043de0e97264efef9314f83707c4f610921",
    ),
    (
        "eden:1",
        "aeafc372c2246293fae97fa7f733d53d6399d4903ac0b46a49d8a077c4db5f7e",
        "07dd08937026a3e673463e17adbfe994a378434f644b40ca4e21e12af62dd444",
    ),
    (
        "eden:2",
        "6b7c3759c2baad22d11af444a5985541f0561fd32ac8d5ab02add59c8fe14254",
        "a28de69c928ea792f167fa7850c2a3722eec83cede7dc5cc958e40572d3904c8",
    ),
    (
        "eden:4",
        "7ef562cf258195ac88c6c521b4378dbcd102e8f827ea8720e457b1365108cceb",
        "1bb996380655bea3f9e7d6c5d275704881ce2d55c11ac4854673709af96d036e",
    ),
    (
        "eden:8",
        "4140c2c438c327481a45dacf1a4359df352610304a993a297694c874ed36ad67",
        "ddacaf7be5c532ece34656368aa234041c48020825b40f0777dd3d0ef169f60c",
    ),
    (
        "sign",
        "a5991a9cc9b6581d8997877a1ff7ad510b651fa799ddec587af0b4368a0666e5",
        "865838158cf057fd89271f04879e94eb8505294cac2764e82b7daedb0662b0c2",
    ),
    (
        "sign:chunk=64",
        "044edc26d7b16e77f6fe92f7c983feec817a7d553ca463d486f1e8cab6e8e550",
        "2dddc98060df898a299397d008a95c92c393641997da2085331aea509e9f1e54",
    ),
    (
        "topk:0.1",
        "66b886967436e84a3ac173c99374c56acbfa80cdfd930796ea0e8eca84611d07",
        "9a06362afe16ede50ad72c1de957209ecb8997c2e4e6f96ee46a7a1f8440bb82",
    ),
    (
        "topk:0.05:sampled",
        "d2a12766bb5e42657c09bb46419e5eb14997bcf468f61a17c0ce6743a6b00887",
        "aa2bbd32afdbda8e59e8de4a958da14b7d93492d26e1202b397b56d45622be79",
    ),
    (
        "randk:0.3",
        "f701e9dc52f031254674f03a01f7324f7a370eb6e3d33a1ab1f450b718e97643",
        "84ba626735806fc677f62ee771b20acc54593bce52584060afdf25796aba39a3",
    ),
    (
        "randk:0.05",
        "c91914fab278c6de33a5ddf90f28d66f0cc885c72fce39564ca47f6888d6d7d8",
        "0a369f3d3acdc341b10252fafee728bb711553e8a45cace2d5745d4e9a9ebc0b",
    ),
    (
        "randk:1",
        "8f83faa5fa0eaf631925370a81974d90a546c0ac87d13baa8828db8103d9dccc",
        "32bbb770bc8da744de6f1b62c4e8ff4fc6a27f1c15f61d6fc1798a35e3f06d40",
    ),
    (
        "topk:0.01+quant:8",
        "8db2efcc7c28dbbf98b6ab6742f940074d8dc02570c98f017ff3b7d20ecf8662",
        "67d5b7003a240d5d3383626193c950bbcc72092d24f462f395ff5e64ab149f5b",
    ),
    (
        "topk:0.1+f16",
        "74befe7f7d609088498ed709e7e7a3035d97e779f0132b1189069aa2dd6575c2",
        "fcff69ecf695d54e497f454ac8a26a67716da2ead430add123bcc6d15d58ea93",
    ),
    (
        "topk:0.1+bf16",
        "53e90154c0475246512821d336d9526539bea920988f8b3ad770b30f6eba74b9",
        "8a4f2aa246742d6b2a895e9182e066ee02f8aaf35691000057e7661ca33dfb93",
    ),
    (
        "topk:0.2:sampled+qsgd:4",
        "7878a2d7dbe0598996e465b3e5d39b95211cf1290a084ba306a6a57744f94d13",
        "496d401dbf0d379955f3f2e5ec6dc998829b5c8e526844cfa2e0af1e4830d8ae",
    ),
    (
        "topk:0.3+sign",
        "5559c038c382bf9de94378de263fbbcb54b7d716af9022dfec6000126fb62739",
        "8d6d858c323db5c8055713b6c31a3d207f7d2b46145625d2533e6169b8a5c9c9",
    ),
    (
        "topk:0.5+eden:4",
        "24efe2367eca8fab4f11f12da0892436843bb5df0f20a7e63e95fd33673cc349",
        "9d3fae3271b7cde7630a0ed02ca73d16f6ab93f45ade6e3043a4ff5f153a969f",
    ),
    (
        "randk:0.01+quant:8",
        "297486fda134f5b3c7674cd5e6f28b35aa67aaf16820715cca9374d29d3ec21e",
        "9bbe98c307b4a85dbb3a600fd6dc68658ff4ecf15e53933bd8a4ce16ad006810",
    ),
    (
        "randk:0.5+eden:2",
        "f6b7d02bdf5c6da1927beda4535537363f9cff682e504b2b07f2cd197b86720e",
        "056acee544eabe1ceabcf6f51fc00c97103b8947114f3dd760ef1c8a1c55c825",
    ),
    (
        "randk:0.2+sign:chunk=16",
        "780785af20ea2101241021906e00606aa35cb3c59fe4234c8d923777eae281c6",
        "c30d02b31e0479ac0fe414cd6b47a4369374265e937fd2c3f058a2732468cc23",
    ),
    (
        "randk:0.1+quant:4:stochastic",
        "724391d92f37c80ef6b399f82bf9bfd37bc17aa9ab2880cbd40473471b0ea207",
        "107a4d2136b2919a370d762cbeed5333117e16e9812342fb77cf9260214d8906",
    ),
    (
        "topk:0.5+randk:0.5+quant:4",
        "e85b4beb882095c30c2a5bc76e6a1474ea0a119ed0ff14b717ba1c34b2804439",
        "6df723fa9901c47bd7b945e41f3714e45dae108536eaac226135e2bad95b5e1f",
    ),
    (
        "randk:0.5+topk:0.2+randk:0.5+qsgd:2",
        "b7d9cef30fc0505f6196e3ed23e5605d21837e3bcd8ade51d13913e793f8b4d6",
        "8f48417a36d3b528b54a5b7de831dac69e723c940c66809490e37d7afecb5de7",
    ),
];

/// Gaussian-like values with exact zeros, a negative zero and a few outliers, 7 × 10001 of them:
/// several parallel tasks, partial last chunks, and a length that is no power of two.
fn input() -> Vec<f32> {
    let mut g = SplitMix64::new(2026);
    (0..70_007)
        .map(|i| match i % 997 {
            0 => 0.0,
            1 => -0.0,
            2 => 250.0 * (g.next_f64() as f32 - 0.5),
            _ => ((g.next_f64() + g.next_f64() + g.next_f64() - 1.5) * 2.0) as f32,
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `(spec, frame digest, digest of the decoded values)` for every golden spec, as they are now.
fn digests() -> Vec<(String, String, String)> {
    let x = input();
    GOLDEN
        .iter()
        .map(|(text, _, _)| {
            let spec = Spec::parse(text).unwrap();
            let frame = encode(&spec, &x, &[7, 10_001], 42).unwrap();
            let (y, shape) = decode(&frame).unwrap();
            assert_eq!(shape, vec![7, 10_001], "{text}");
            ((*text).to_string(), hex(&frame), hex(&floats(&y)))
        })
        .collect()
}

#[test]
fn every_spec_writes_and_decodes_the_same_bytes_as_before() {
    let now = digests();
    let table = now.iter().fold(String::new(), |mut t, (s, f, d)| {
        let _ = writeln!(t, "    (\"{s}\", \"{f}\", \"{d}\"),");
        t
    });
    let changed: Vec<&str> = GOLDEN
        .iter()
        .zip(&now)
        .filter(|((_, f, d), (_, nf, nd))| f != nf || d != nd)
        .map(|((s, _, _), _)| *s)
        .collect();
    assert!(
        changed.is_empty(),
        "frames or decoded values changed for {changed:?}; the digests now are:\n{table}"
    );
}

#[test]
fn the_accumulator_adds_what_decode_returns() {
    // Weighted adds of every golden frame into one sum equal the same sums of decoded arrays, up
    // to float rounding relative to the terms added: a quant frame adds `w*lo + code*(w*step)`
    // in one pass, a random-k frame folds the weight into its 1/fraction rescaling.
    let x = input();
    let mut acc = Accumulator::new(x.len()).unwrap();
    let mut expected = vec![0.0f32; x.len()];
    let mut magnitude = vec![0.0f32; x.len()];
    for (i, (text, _, _)) in GOLDEN.iter().enumerate() {
        let frame = encode(&Spec::parse(text).unwrap(), &x, &[x.len() as u64], i as u64).unwrap();
        let (y, _) = decode(&frame).unwrap();
        let w = 0.25 * (1 + i % 3) as f32;
        acc.add(&frame, w).unwrap();
        for ((e, m), v) in expected.iter_mut().zip(&mut magnitude).zip(&y) {
            *e += w * v;
            *m += (w * v).abs();
        }
    }
    let mismatch =
        (0..x.len()).find(|&i| (acc.sum()[i] - expected[i]).abs() > 1e-5 * (1.0 + magnitude[i]));
    assert_eq!(
        mismatch.map(|i| (i, acc.sum()[i], expected[i], magnitude[i])),
        None
    );
}
